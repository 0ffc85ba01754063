"""Demo data of propfirm: two products and a verified trader who bought one of each.

The trader signs in as ``trader@example.com`` / ``brokerdesk-demo``. Their challenge accounts
are opened on the simulator by the worker's ``propfirm.platform`` job once ``brokerdesk demo``
has started it. Seeding twice changes nothing (fixed codes and request ids).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.db import transaction

from brokerdesk.clients import services as clients
from brokerdesk.clients.queries import client_id_for_user
from brokerdesk.compliance import services as compliance
from brokerdesk.compliance.kyc import KycState
from brokerdesk.ledger import services as ledger
from brokerdesk.propfirm import services
from brokerdesk.propfirm.models import Product

DEMO_TRADER = ("trader@example.com", "brokerdesk-demo")
ACTOR = "system:demo"
PRODUCTS: list[dict[str, Any]] = [
    {
        "code": "classic-10k",
        "name": "Classic 10K",
        "price": 99_00,
        "currency": "USD",
        "account_size": 10_000_00,
        "profit_split_bps": 8000,
        "phases": [
            {"name": "Evaluation", "daily_loss_bps": 500, "max_loss_bps": 1000,
             "profit_target_bps": 800, "min_trading_days": 4, "time_limit_days": 30},
            {"name": "Verification", "daily_loss_bps": 500, "max_loss_bps": 1000,
             "profit_target_bps": 500, "min_trading_days": 4, "time_limit_days": 60},
            {"name": "Funded", "daily_loss_bps": 500, "max_loss_bps": 1000},
        ],
    },
    {
        "code": "rapid-25k",
        "name": "Rapid 25K (one step, trailing)",
        "price": 199_00,
        "currency": "USD",
        "account_size": 25_000_00,
        "profit_split_bps": 9000,
        "phases": [
            {"name": "Evaluation", "daily_loss_bps": 400, "max_loss_bps": 600,
             "max_loss_mode": "trailing", "profit_target_bps": 1000, "consistency_bps": 4000},
            {"name": "Funded", "daily_loss_bps": 400, "max_loss_bps": 600,
             "max_loss_mode": "trailing"},
        ],
    },
]  # fmt: skip


def _products() -> list[Product]:
    made = []
    for spec in PRODUCTS:
        existing = Product.objects.filter(code=spec["code"]).order_by("-version").first()
        made.append(existing or services.create_product(by=ACTOR, **spec))
    return made


def _trader() -> str:
    email, password = DEMO_TRADER
    user_model = get_user_model()
    user = user_model.objects.filter(email=email).first()
    if user is None:
        with transaction.atomic():
            user = user_model.objects.create_user(
                username="demotrader", email=email, password=password
            )
            EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
            client = clients.register_individual(
                email=email,
                first_name="Tara",
                last_name="Trader",
                date_of_birth=date(1988, 6, 1),
                country="CY",
                jurisdiction="cysec",
                user=user,
                by=ACTOR,
            )
            for step in (KycState.UNDER_VERIFICATION, KycState.APPROVED):
                compliance.transition_kyc(
                    client.pk, step, by=ACTOR, reason="demo", provider="sumsub"
                )
    client_id = str(client_id_for_user(user))
    ledger.transfer(
        f"demo-propfirm-deposit-{client_id}",
        debit_account=ledger.system_account("psp_clearing", "USD", qualifier="sandbox").id,
        credit_account=ledger.wallet_account(client_id, "USD").id,
        amount=1_000_00,
        currency="USD",
        kind="deposit",
    )
    return client_id


def seed() -> str:
    """Two products and a trader with one challenge of each (idempotent)."""
    products = _products()
    client_id = _trader()
    for product in products:
        services.purchase_challenge(
            client_id, product.pk, request_id=f"demo-propfirm-{product.code}", by=ACTOR
        )
    email, password = DEMO_TRADER
    return f"{len(products)} challenge products; prop trader {email} / {password}"
