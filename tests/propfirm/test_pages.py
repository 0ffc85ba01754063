"""The pages and the API: what a client and a dealer see and may do, and who is refused."""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.test import Client as HttpClient

from brokerdesk.compliance import services as compliance
from brokerdesk.compliance.kyc import KycState
from brokerdesk.core import clock
from brokerdesk.propfirm import services
from brokerdesk.propfirm.models import Challenge, PhaseAccount, PhaseStatus, Product
from brokerdesk.staff.roles import Role, grant_role
from tests.clients.factories import individual
from tests.propfirm.conftest import FUNDED, T0, Platform, fund, make_product, msc, wallet_cash
from tests.propfirm.test_payouts import win_trade
from tests.web.conftest import verified_user

pytestmark = pytest.mark.django_db


def client_session(http: HttpClient, cash: int = 0) -> UUID:
    """Sign a new verified client in; returns the client's id."""
    user = verified_user()
    client = individual(user=user)
    for step in (KycState.UNDER_VERIFICATION, KycState.APPROVED):
        compliance.transition_kyc(client.pk, step, by="system:test", reason="t", provider="sumsub")
    if cash:
        fund(client.pk, cash)
    http.force_login(user)
    return client.pk


def staff_session(http: HttpClient, role: Role) -> Any:
    """Sign a staff member with ``role`` (and a second factor) in."""
    user = verified_user()
    grant_role(user, role)
    TOTP.activate(user, generate_totp_secret())
    http.force_login(user)
    return user


def buy_key(page: str, product: Product) -> str:
    match = re.search(rf'name="request_id" value="([^"]+-{product.pk.hex})"', page)
    assert match, "the buy form carries an idempotency key"
    return match.group(1)


def test_a_client_sees_products_buys_once_and_sees_the_challenge(client, platform: Platform):
    product = make_product()
    client_id = client_session(client, cash=150_00)

    page = client.get("/portal/challenges/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "10K Challenge" in html and "99.00" in html and 'data-testid="products"' in html
    key = buy_key(html, product)
    for _ in range(2):  # a double click sends the same key
        response = client.post(f"/portal/challenges/buy/{product.pk}/", {"request_id": key})
        assert response.status_code == 302
    assert Challenge.objects.filter(client_id=str(client_id)).count() == 1
    assert wallet_cash(client_id) == 150_00 - 99_00
    mine = client.get("/portal/challenges/").content.decode()
    assert "Bought on" in mine and "Account being opened" in mine


def test_meters_and_the_breach_reason_are_shown_to_the_trader(client, platform: Platform):
    product = make_product()
    client_id = client_session(client, cash=99_00)
    with clock.frozen(T0):
        challenge = services.purchase_challenge(client_id, product.pk, request_id="p1",
                                                by="system:test")  # fmt: skip
        account = services.open_phase_account(
            PhaseAccount.objects.get(challenge=challenge).pk, port=platform.port
        )
        assert account.login is not None
        services.record_equity("sim", account.login, equity=9_800_00, balance=10_000_00,
                               at_msc=msc(T0))  # fmt: skip
        live = client.get("/portal/challenges/live/").content.decode()
        assert 'data-rule="daily_loss"' in live and "200.00 of 500.00 today" in live
        assert 'data-rule="profit_target"' in live and f"login {account.login}" in live
        services.record_equity("sim", account.login, equity=9_470_00, balance=10_000_00,
                               at_msc=msc(T0) + 3_600_000)  # fmt: skip

    html = client.get("/portal/challenges/").content.decode()
    assert "Daily loss 5.3% exceeds 5%: equity 9,470.00 at 10:00 vs day start 10,000.00." in html


def test_a_client_cannot_see_another_clients_challenge_through_the_api(client, platform):
    product = make_product()
    owner = HttpClient()
    owner_id = client_session(owner, cash=99_00)
    services.purchase_challenge(owner_id, product.pk, request_id="own", by="system:test")
    client_session(client)

    assert client.get("/api/v1/propfirm/challenges").json() == []
    assert len(owner.get("/api/v1/propfirm/challenges").json()) == 1


def test_the_api_buys_once_per_request_id_and_explains_a_refusal(client, platform):
    product = make_product()
    client_session(client, cash=120_00)

    body = {"product_id": str(product.pk), "request_id": "api-1"}
    first = client.post("/api/v1/propfirm/challenges", body, content_type="application/json")
    again = client.post("/api/v1/propfirm/challenges", body, content_type="application/json")
    poor = client.post("/api/v1/propfirm/challenges", {**body, "request_id": "api-2"},
                       content_type="application/json")  # fmt: skip

    assert first.status_code == 201 and again.json()["id"] == first.json()["id"]
    assert first.json()["phases"][0]["phase_name"] == "Evaluation"
    assert poor.status_code == 409 and poor.json()["code"] == "insufficient_funds"
    products = client.get("/api/v1/propfirm/products").json()
    assert products[0]["phases"][0]["profit_target_bps"] == 800


def test_staff_api_needs_the_dealing_role(client, platform):
    staff_session(client, Role.SUPPORT)
    refused = client.get("/api/v1/propfirm/staff/challenges")
    assert refused.status_code == 403

    dealer = HttpClient()
    staff_session(dealer, Role.DEALING)
    created = dealer.post(
        "/api/v1/propfirm/staff/products",
        {"code": "api-25k", "name": "25K", "price": 199_00, "currency": "USD",
         "account_size": 25_000_00, "phases": [{"name": "Evaluation", "profit_target_bps": 1000},
                                               {"name": "Funded"}]},
        content_type="application/json",
    )  # fmt: skip
    assert created.status_code == 201 and created.json()["version"] == 1
    bad = dealer.post(
        "/api/v1/propfirm/staff/products",
        {"code": "api-bad", "name": "Bad", "price": 1, "currency": "USD", "account_size": 1,
         "phases": [{"name": "Evaluation"}, {"name": "Funded"}]},
        content_type="application/json",
    )  # fmt: skip
    assert bad.status_code == 400 and bad.json()["field"] == "phases[0].profit_target_bps"


def test_the_back_office_lists_challenges_and_fails_one_by_hand(
    client, platform: Platform, django_capture_on_commit_callbacks
):
    product = make_product()
    trader = HttpClient()
    trader_id = client_session(trader, cash=99_00)
    with clock.frozen(T0):
        challenge = services.purchase_challenge(trader_id, product.pk, request_id="bo",
                                                by="system:test")  # fmt: skip
        account = services.open_phase_account(
            PhaseAccount.objects.get(challenge=challenge).pk, port=platform.port
        )
    staff_session(client, Role.DEALING)

    page = client.get("/backoffice/prop/")
    assert page.status_code == 200 and str(account.login) in page.content.decode()
    missing_reason = client.post(f"/backoffice/prop/decide/{account.pk}/", {"outcome": "fail"})
    assert missing_reason.status_code == 302
    assert PhaseAccount.objects.get(pk=account.pk).status == PhaseStatus.ACTIVE
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/backoffice/prop/decide/{account.pk}/",
                    {"outcome": "fail", "reason": "Hedging across accounts"})  # fmt: skip

    failed = PhaseAccount.objects.get(pk=account.pk)
    assert failed.status == PhaseStatus.FAILED and failed.rule == "manual"
    assert not platform.trade_allowed(account.login or 0)  # told the platform after commit
    listed = client.get("/backoffice/prop/?status=failed").content.decode()
    assert "Hedging across accounts" in listed


def test_back_office_pages_refuse_staff_without_the_dealing_role(client, platform):
    staff_session(client, Role.FINANCE)
    product = make_product()

    assert client.get("/backoffice/prop/").status_code == 403
    assert client.get("/backoffice/prop/products/").status_code == 403
    assert client.post(f"/backoffice/prop/products/{product.pk}/active/",
                       {"active": "0"}).status_code == 403  # fmt: skip
    assert Product.objects.get(pk=product.pk).active


def test_a_client_is_refused_the_back_office_pages(client, platform):
    client_session(client)
    assert client.get("/backoffice/prop/").status_code == 403


def _product_post(**changes: Any) -> dict[str, Any]:
    data = {
        "code": "form-50k", "name": "50K Challenge", "currency": "USD", "price": "299.00",
        "account_size": "50000", "profit_split": "85", "server": "sim",
        "platform_group": "demo\\standard", "leverage": "100",
        "phase-TOTAL_FORMS": "3", "phase-INITIAL_FORMS": "0",
        "phase-MIN_NUM_FORMS": "3", "phase-MAX_NUM_FORMS": "3",
        "phase-0-name": "Evaluation", "phase-0-daily_loss": "5", "phase-0-max_loss": "10",
        "phase-0-max_loss_mode": "trailing", "phase-0-profit_target": "8",
        "phase-0-min_trading_days": "4", "phase-0-time_limit_days": "30",
        "phase-0-consistency": "40",
        "phase-1-name": "Funded", "phase-1-daily_loss": "5", "phase-1-max_loss": "10",
        "phase-1-max_loss_mode": "static",
        "phase-2-name": "", "phase-2-max_loss_mode": "static",
    }  # fmt: skip
    data.update(changes)
    return data


def test_a_dealer_creates_and_revises_a_product_through_the_form(client):
    staff_session(client, Role.DEALING)

    assert client.get("/backoffice/prop/products/").status_code == 200
    response = client.post("/backoffice/prop/products/", _product_post())
    assert response.status_code == 302
    product = Product.objects.get(code="form-50k")
    assert (product.price, product.account_size, product.profit_split_bps) == (299_00, 50_000_00,
                                                                                8500)  # fmt: skip
    assert product.phases[0]["max_loss_mode"] == "trailing"
    assert product.phases[0]["consistency_bps"] == 4000 and product.phases[1]["funded"]

    edit = client.get(f"/backoffice/prop/products/{product.pk}/")
    assert (
        edit.status_code == 200
        and 'name="phase-0-profit_target" value="8"' in edit.content.decode()
    )
    client.post(f"/backoffice/prop/products/{product.pk}/",
                _product_post(**{"phase-0-profit_target": "10", "price": "279.00"}))  # fmt: skip
    latest = Product.objects.get(code="form-50k", version=2)
    assert latest.price == 279_00 and latest.phases[0]["profit_target_bps"] == 1000
    assert not Product.objects.get(pk=product.pk).active


def test_the_product_form_names_the_field_at_fault(client):
    staff_session(client, Role.DEALING)

    cents = client.post("/backoffice/prop/products/", _product_post(price="1.001"))
    no_target = client.post("/backoffice/prop/products/",
                            _product_post(**{"phase-0-profit_target": ""}))  # fmt: skip

    assert cents.status_code == 400 and "USD has 2 decimal places" in cents.content.decode()
    assert no_target.status_code == 400
    assert "every phase before the funded one needs a profit target" in no_target.content.decode()
    assert not Product.objects.exists()


def test_a_funded_trader_asks_for_the_profit_share_from_the_page(client, platform: Platform):
    product = make_product(FUNDED, profit_split_bps=7500)
    client_id = client_session(client, cash=99_00)
    challenge = services.purchase_challenge(client_id, product.pk, request_id="f1",
                                            by="system:test")  # fmt: skip
    account = services.open_phase_account(
        PhaseAccount.objects.get(challenge=challenge).pk, port=platform.port
    )
    services.record_closed_deals([win_trade(platform, account)])
    profit = platform.balance(account.login or 0) - account.account_size
    page = client.get("/portal/challenges/").content.decode()
    assert "Request my profit share" in page and "You keep 75% of the profit" in page
    key = re.search(r'name="request_id" value="([0-9a-f]{32})"', page)
    assert key

    for _ in range(2):
        client.post(f"/portal/challenges/payout/{account.pk}/",
                    {"request_id": key.group(1), "method": ""})  # fmt: skip

    assert wallet_cash(client_id) == profit * 7500 // 10_000
    assert 'data-testid="payouts"' in client.get("/portal/challenges/").content.decode()
