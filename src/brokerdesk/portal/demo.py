"""Demo data of the client portal: a client who can sign in, with money in the wallet."""

from __future__ import annotations

from datetime import date

from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.db import transaction

from brokerdesk.clients import services as clients
from brokerdesk.clients.queries import client_id_for_user
from brokerdesk.ledger import services as ledger

DEMO_CLIENT = ("client@example.com", "brokerdesk-demo")


def seed() -> str:
    """Create the demo client login once: verified e-mail, client record, a USD deposit."""
    email, password = DEMO_CLIENT
    user_model = get_user_model()
    if user_model.objects.filter(email=email).exists():
        return f"client sign-in {email} exists"
    with transaction.atomic():
        user = user_model.objects.create_user(username="democlient", email=email, password=password)
        EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
        clients.register_individual(
            email=email,
            first_name="Demo",
            last_name="Client",
            date_of_birth=date(1990, 1, 15),
            country="CY",
            jurisdiction="cysec",
            user=user,
            by="system:demo",
        )
    client_id = client_id_for_user(user)
    clearing = ledger.system_account("psp_clearing", "USD", qualifier="sandbox")
    wallet = ledger.wallet_account(str(client_id), "USD")
    ledger.transfer(
        f"demo-portal-deposit-{client_id}",
        debit_account=clearing.id,
        credit_account=wallet.id,
        amount=100_000,
        currency="USD",
        kind="deposit",
    )
    return f"client sign-in {email} / {password}"
