"""The client portal's pages through Django's test client: each page for its owner only,
KYC upload and submission, deposits through the sandbox PSP, withdrawals with their review
step, statements, the profile and language, referral sign-up, and per-locale formatting."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any
from uuid import UUID

import pytest
from django.test import Client as HttpClient
from django.utils import translation

from brokerdesk.clients.queries import client_id_for_user, get_client
from brokerdesk.compliance import services as compliance
from brokerdesk.compliance.kyc import KycState
from brokerdesk.compliance.queries import documents_of, kyc_status
from brokerdesk.core import clock
from brokerdesk.ledger import queries as ledger_queries
from brokerdesk.ledger import services as ledger
from brokerdesk.partners.queries import attributed_ib_code
from brokerdesk.payments import connectors
from brokerdesk.payments import queries as payment_queries
from brokerdesk.payments.connectors.sandbox import SandboxConnector
from brokerdesk.payments.sandbox.server import SandboxPSP
from brokerdesk.portal import formatting
from brokerdesk.staff.roles import Role, grant_role
from tests.web.conftest import PASSWORD, verified_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_passwords(settings: Any) -> None:
    """A cheap password hasher: these tests sign people up and in many times."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


SECRET = "whsec_portal_" + "x" * 16
API_KEY = "sk_portal_sandbox"
PAGES = [
    "/portal/",
    "/portal/profile/",
    "/portal/verification/",
    "/portal/wallets/",
    "/portal/wallets/deposit/",
    "/portal/wallets/withdraw/",
    "/portal/accounts/",
    "/portal/accounts/transfer/",
    "/portal/history/",
    "/portal/statements/",
]


def png() -> bytes:
    """A small but well-formed PNG header (enough for the document checks)."""
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + b"IHDR"
        + struct.pack(">IIBBBBB", 600, 400, 8, 2, 0, 0, 0)
        + b"\x00" * 4
        + b"IEND\xaeB`\x82"
    )


def signed_up(http: HttpClient, email: str = "eleni@example.com", **extra: str) -> UUID:
    """Sign up through the real form, verify the address, sign in; return the client id."""
    from allauth.account.models import EmailAddress

    response = http.post(
        "/accounts/signup/",
        {
            "first_name": "Eleni",
            "last_name": "Georgiou",
            "email": email,
            "date_of_birth": "1991-03-08",
            "country": "CY",
            "jurisdiction": "cysec",
            "password1": PASSWORD,
            "password2": PASSWORD,
            **extra,
        },
    )
    assert response.status_code == 302, response.content[:2000]
    EmailAddress.objects.filter(email=email).update(verified=True)
    assert http.post("/accounts/login/", {"login": email, "password": PASSWORD}).status_code == 302
    from django.contrib.auth import get_user_model

    found = client_id_for_user(get_user_model().objects.get(email=email))
    assert found is not None
    return found


def approve(client_id: UUID) -> None:
    for step in (KycState.UNDER_VERIFICATION, KycState.APPROVED):
        compliance.transition_kyc(client_id, step, by="system:test", reason="test", provider="x")


def cash(client_id: UUID, currency: str = "USD", bucket: str = "cash") -> int:
    return ledger_queries.balance(ledger.wallet_account(client_id, currency, bucket).id).posted


@pytest.fixture
def psp(tmp_path: Any) -> Iterator[SandboxPSP]:
    """The sandbox PSP; its webhooks are handed to the payments service in-process."""
    server = SandboxPSP(secret=SECRET, api_key=API_KEY, settlement_dir=tmp_path, max_attempts=1)
    server.start()
    connectors.register(
        SandboxConnector(base_url=server.url, api_key=API_KEY, webhook_secret=SECRET)
    )
    try:
        yield server
    finally:
        server.stop()
        connectors.unregister("sandbox")


def pay(psp: SandboxPSP, provider_id: str) -> None:
    """The client pays on the hosted page; the signed webhook reaches the service."""
    import json

    from brokerdesk.payments import services as payments
    from brokerdesk.payments.sandbox import signing

    psp.act(provider_id, "complete")
    event = [e for e in psp.events.values() if e["data"]["object"]["id"] == provider_id][-1]
    body = json.dumps(event).encode()
    payments.receive_webhook("sandbox", body, {signing.HEADER: signing.sign(body, SECRET)})


def test_every_portal_page_opens_for_the_client_and_asks_strangers_to_sign_in(client):
    signed_up(client)
    for page in PAGES:
        response = client.get(page)
        assert response.status_code == 200, page
        assert b'id="content"' in response.content
    anonymous = HttpClient()
    for page in PAGES:
        assert anonymous.get(page)["Location"].startswith("/accounts/login/"), page


def test_the_menu_lists_the_portal_pages_and_marks_the_current_one(client):
    signed_up(client)
    html = client.get("/portal/wallets/").content.decode()
    assert '<a href="/portal/wallets/" aria-current="page">Wallets</a>' in html
    for label in ("Accounts", "History", "Statements", "Verification", "Profile"):
        assert f">{label}</a>" in html


def test_kyc_upload_submit_and_the_rejection_reason_is_shown(client, settings, tmp_path):
    settings.DOCUMENTS_DIR = tmp_path / "documents"
    client_id = signed_up(client)
    page = client.get("/portal/verification/").content.decode()
    assert "Passport or National identity card or Driving licence" in page

    today = clock.now().date()
    passport = client.post(
        "/portal/verification/",
        {
            "doc_type": "passport",
            "file": _file("passport.png"),
            "expires_on": (today + timedelta(days=3000)).isoformat(),
        },
    )
    assert passport.status_code == 302
    too_old = client.post(
        "/portal/verification/",
        {
            "doc_type": "proof_of_address",
            "file": _file("bill.png", extra=b"1"),
            "issued_on": (today - timedelta(days=400)).isoformat(),
        },
    )
    assert too_old.status_code == 200
    assert "must be at most 180 days old" in too_old.content.decode()
    bill = client.post(
        "/portal/verification/",
        {
            "doc_type": "proof_of_address",
            "file": _file("bill.png", extra=b"2"),
            "issued_on": (today - timedelta(days=10)).isoformat(),
        },
    )
    assert bill.status_code == 302
    assert sorted(d.doc_type for d in documents_of(client_id)) == ["passport", "proof_of_address"]

    assert "Send for verification" in client.get("/portal/verification/").content.decode()
    client.post("/portal/verification/", {"action": "submit"})
    assert kyc_status(client_id).state == "under_verification"

    officer = verified_user()
    grant_role(officer, Role.COMPLIANCE_OFFICER)
    compliance.reject_kyc(client_id, by=officer, reason="The passport photo is blurred.")
    page = client.get("/portal/verification/").content.decode()
    assert 'data-state="rejected"' in page
    assert "Reason: The passport photo is blurred." in page


def _file(name: str, extra: bytes = b"") -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, png() + extra, content_type="image/png")


def test_a_deposit_through_the_sandbox_psp_reaches_the_wallet(client, psp):
    client_id = signed_up(client)
    approve(client_id)

    bad = client.post(
        "/portal/wallets/deposit/", {"amount": "10.001", "currency": "USD", "request_id": "r1"}
    )
    assert "Use at most 2 decimal places for USD." in bad.content.decode()

    made = client.post(
        "/portal/wallets/deposit/", {"amount": "250,50", "currency": "USD", "request_id": "r2"}
    )
    assert made.status_code == 302
    again = client.post(
        "/portal/wallets/deposit/", {"amount": "250,50", "currency": "USD", "request_id": "r2"}
    )
    assert again["Location"] == made["Location"]  # a double submit is the same deposit
    (deposit,) = payment_queries.deposits_of(client_id)
    assert (deposit.amount, deposit.status) == (25_050, "pending")
    page = client.get(made["Location"]).content.decode()
    assert deposit.pay_url in page and "Waiting for your payment" in page

    pay(psp, deposit.provider_id)
    status = client.get(made["Location"], headers={"HX-Request": "true"}).content.decode()
    assert 'data-state="confirmed"' in status and "hx-trigger" not in status
    assert cash(client_id) == 25_050
    wallets = client.get("/portal/wallets/").content.decode()
    assert "250.50" in wallets and "Deposit" in wallets


def test_another_clients_deposit_is_not_found(client, psp):
    owner = signed_up(client, email="owner@example.com")
    approve(owner)
    made = client.post(
        "/portal/wallets/deposit/", {"amount": "10", "currency": "USD", "request_id": "a"}
    )
    stranger = HttpClient()
    signed_up(stranger, email="stranger@example.com")
    assert stranger.get(made["Location"]).status_code == 404


def test_a_withdrawal_is_reviewed_then_confirmed_once(client, psp):
    client_id = signed_up(client)
    approve(client_id)
    made = client.post(
        "/portal/wallets/deposit/", {"amount": "500", "currency": "USD", "request_id": "d"}
    )
    assert made.status_code == 302
    pay(psp, payment_queries.deposits_of(client_id)[0].provider_id)
    (method,) = payment_queries.withdrawal_methods(client_id)
    form = {"amount": "120", "currency": "USD", "method": str(method.id), "request_id": "w1"}

    review = client.post("/portal/wallets/withdraw/", form).content.decode()
    assert 'data-testid="withdraw-review"' in review and "120.00" in review
    assert 'data-testid="no-forfeiture"' in review  # the bonuses module's preview: nothing
    assert payment_queries.withdrawals_of(client_id) == []  # nothing happens before confirming

    confirmed = client.post("/portal/wallets/withdraw/", {**form, "confirm": "1"})
    replay = client.post("/portal/wallets/withdraw/", {**form, "confirm": "1"})
    assert confirmed.status_code == replay.status_code == 302
    (withdrawal,) = payment_queries.withdrawals_of(client_id)
    assert withdrawal.amount == 12_000
    assert cash(client_id) == 38_000 and cash(client_id, bucket="locked") == 12_000

    too_much = client.post(
        "/portal/wallets/withdraw/", {**form, "amount": "1000", "request_id": "w2", "confirm": "1"}
    )
    assert too_much.status_code == 200
    assert cash(client_id) == 38_000


def test_the_withdrawal_review_shows_the_bonus_it_would_forfeit(client, psp, monkeypatch):
    from types import SimpleNamespace

    from brokerdesk.portal import wallet_views

    client_id = signed_up(client)
    approve(client_id)
    client.post("/portal/wallets/deposit/", {"amount": "100", "currency": "USD", "request_id": "d"})
    pay(psp, payment_queries.deposits_of(client_id)[0].provider_id)
    (method,) = payment_queries.withdrawal_methods(client_id)
    asked: list[tuple[Any, str, int]] = []

    def preview(cid: Any, currency: str, amount: int) -> Any:
        asked.append((cid, currency, amount))
        return SimpleNamespace(forfeited=2_500, bonuses=[("b1", "Welcome bonus", 2_500)])

    monkeypatch.setattr(wallet_views, "_forfeiture", preview)
    form = {"amount": "40", "currency": "USD", "method": str(method.id), "request_id": "w"}
    page = client.post("/portal/wallets/withdraw/", form).content.decode()
    assert asked == [(client_id, "USD", 4_000)]
    assert "This withdrawal forfeits 25.00\xa0USD of bonus money." in page
    assert "Welcome bonus: 25.00\xa0USD" in page


def test_statements_download_as_csv_with_the_ledger_lines(client, psp):
    client_id = signed_up(client)
    approve(client_id)
    client.post("/portal/wallets/deposit/", {"amount": "75", "currency": "USD", "request_id": "d"})
    pay(psp, payment_queries.deposits_of(client_id)[0].provider_id)
    today = date.today().isoformat()

    response = client.get(
        "/portal/statements/",
        {"currency": "USD", "start": today, "end": today, "format": "csv"},
    )
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="statement-USD-')
    body = response.content.decode()
    assert "7500" in body or "75.00" in body
    pdf = client.get(
        "/portal/statements/",
        {"currency": "USD", "start": today, "end": today, "format": "pdf"},
    )
    assert pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
    wrong = client.get(
        "/portal/statements/",
        {"currency": "USD", "start": today, "end": "2000-01-01", "format": "csv"},
    )
    assert "The end date must not be before the start date." in wrong.content.decode()


def test_the_profile_saves_contact_details_and_the_chosen_language(client):
    client_id = signed_up(client)
    response = client.post(
        "/portal/profile/",
        {
            "phone": "+357 99 123456",
            "address_line": "1 Harbour Street",
            "city": "Limassol",
            "postal_code": "3035",
            "preferred_language": "de",
        },
    )
    assert response.status_code == 302
    assert response.cookies["django_language"].value == "de"
    saved = get_client(client_id)
    assert (saved.city, saved.preferred_language) == ("Limassol", "de")
    page = client.get("/portal/profile/")
    assert page.content.decode().count('lang="de"') == 1  # the page is now in German


def test_signing_in_applies_the_clients_language_unless_they_switched(client):
    client_id = signed_up(client)
    from brokerdesk.clients import services as client_services

    client_services.update_contact(
        client_id, {"preferred_language": "fr"}, by="system:test", reason="test"
    )
    fresh = HttpClient()
    signed_in = fresh.post("/accounts/login/", {"login": "eleni@example.com", "password": PASSWORD})
    assert signed_in.cookies["django_language"].value == "fr"
    switched = HttpClient()
    switched.cookies["django_language"] = "it"
    again = switched.post("/accounts/login/", {"login": "eleni@example.com", "password": PASSWORD})
    assert "django_language" not in again.cookies


def test_money_is_formatted_per_locale():
    cases = {
        "en": "1,234,567.89\xa0USD",
        "de": "1.234.567,89\xa0USD",
        "fr": "1\xa0234\xa0567,89\xa0USD",
        "hi": "12,34,567.89\xa0USD",
        "zh-hans": "1,234,567.89\xa0USD",
    }
    for language, expected in cases.items():
        with translation.override(language):
            assert formatting.format_money(123_456_789, "USD") == expected, language
    with translation.override("de"):
        assert formatting.format_money(-1_500, "JPY") == "-1.500\xa0JPY"
        assert formatting.format_lots(15_000) == "1,50"
        assert formatting.format_scaled(108_345, 5) == "1,08345"


def test_a_referral_link_attributes_the_new_client_to_the_ib(client):
    from brokerdesk.partners import services as partners
    from tests.partners.conftest import make_ib

    ib = make_ib(code="harbour")
    partners.create_link(ib.pk, by="system:test", code="harbour-link")
    landing = client.get("/portal/join/harbour-link/")
    assert landing["Location"] == "/accounts/signup/" and "bd_ref" in landing.cookies
    client_id = signed_up(client)
    assert attributed_ib_code(client_id) == "harbour"


def test_a_promo_code_at_sign_up_attributes_the_client(client):
    from brokerdesk.partners import services as partners
    from tests.partners.conftest import make_ib

    ib = make_ib(code="lighthouse")
    partners.create_link(ib.pk, by="system:test", kind="promo", code="LIGHT10")
    client_id = signed_up(client, promo_code="light10")
    assert attributed_ib_code(client_id) == "lighthouse"


def test_the_landing_page_welcomes_visitors_and_sends_clients_to_the_portal(client):
    page = client.get("/")
    assert page.status_code == 200 and b"Open an account" in page.content
    signed_up(client)
    assert client.get("/")["Location"] == "/portal/"


def test_trading_history_shows_only_the_clients_own_deals(client):
    from datetime import UTC, datetime

    from brokerdesk.trading.models import TradingDeal
    from brokerdesk.trading.services import register_trading_account

    owner = signed_up(client, email="owner@example.com")
    stranger = HttpClient()
    signed_up(stranger, email="stranger@example.com")
    account = register_trading_account(
        server="sim",
        login=70001,
        client_id=str(owner),
        currency="USD",
        group="real\\x",
        leverage=100,
    )
    at = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    TradingDeal.objects.create(
        server="sim", deal=424242, time=at, time_msc=int(at.timestamp() * 1000), login=70001,
        action=1, entry=1, symbol="XAUUSD", volume=2_500, price=265012, digits=2, profit=-1234,
    )  # fmt: skip

    mine = client.get("/portal/history/", {"account": str(account.id)}).content.decode()
    theirs = stranger.get("/portal/history/", {"account": str(account.id)}).content.decode()
    assert "#424242" in mine and "XAUUSD" in mine and "-12.34" in mine and "0.25" in mine
    assert "#424242" not in theirs and "No deals yet" in theirs
