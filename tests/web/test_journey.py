"""The main journey in a real browser (Playwright driving Debian's Chromium against a live
server, the sandbox PSP and the MT5 simulator):

a visitor comes through an IB's referral link → signs up → verifies the e-mail → uploads KYC
documents → a compliance officer approves them in the back office → the client deposits through
the sandbox PSP's hosted page → opens a live account and transfers money to it → trades (on the
simulator) and sees the deals → requests a withdrawal (reviewing it first) → a support agent is
refused the withdrawals queue → a finance officer (another person) approves it → the IB sees
the commission. Every main page is screenshotted at desktop and phone widths and checked with
axe-core (no serious or critical violations).

Screenshots go to ``$WEB_SCREENSHOTS`` (default: a temporary directory).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from allauth.mfa.totp.internal.auth import (
    TOTP,
    format_hotp_value,
    generate_totp_secret,
    hotp_value,
    yield_hotp_counters_from_time,
)
from django.core import mail
from django.db import connections

from brokerdesk.clients.models import Client
from brokerdesk.core.bus.factory import get_bus
from brokerdesk.core.consumers import autodiscover, register, unregister
from brokerdesk.core.worker import drain
from brokerdesk.partners import services as partners
from brokerdesk.partners.queries import attributed_ib_code
from brokerdesk.payments import connectors
from brokerdesk.payments import queries as payment_queries
from brokerdesk.payments import services as payments
from brokerdesk.payments.connectors.sandbox import SandboxConnector
from brokerdesk.payments.sandbox.server import SandboxPSP
from brokerdesk.staff.roles import Role, grant_role
from brokerdesk.trading import services as trading
from brokerdesk.trading.bridge import Bridge, BridgeConfig, MemoryCheckpointStore, stream_name
from brokerdesk.trading.ingest import apply_messages
from brokerdesk.trading.models import TradingDeal
from brokerdesk.trading.platform.simulator_adapter import SimulatorAdapter
from tests.partners.conftest import make_ib, plan_for
from tests.trading.conftest import start_simulator, stop_simulator
from tests.web.conftest import PASSWORD, verified_user
from tests.web.test_browser import CHROMIUM, CHROMIUM_ARGS, DESKTOP, snap

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]
SECRET = "whsec_journey_" + "x" * 16
API_KEY = "sk_journey"
SERVER = "journey"
IMPACTS = ("serious", "critical")


@pytest.fixture
def shot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go (``$WEB_SCREENSHOTS`` or a temporary directory)."""
    target = os.environ.get("WEB_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("journey-shots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def tab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A browser tab in a fresh Chromium profile (Debian's Chromium, never a download)."""
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=DESKTOP,
        )
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()
            connections.close_all()


@pytest.fixture
def simulator(tmp_path: Path, settings: Any) -> Iterator[Any]:
    """A quiet MT5 simulator, configured as the portal's platform server."""
    sim = start_simulator(tmp_path, "--rate", "0", "--tick-seconds", "0", "--traders", "0")
    settings.PLATFORM_SERVERS = {SERVER: f"simulator://127.0.0.1:{sim.port}"}
    trading.forget_ports()
    try:
        yield sim
    finally:
        trading.forget_ports()
        stop_simulator(sim)


@pytest.fixture
def psp(live_server: Any, tmp_path: Path) -> Iterator[SandboxPSP]:
    """The sandbox PSP, sending its webhooks to the live server."""
    server = SandboxPSP(
        secret=SECRET,
        api_key=API_KEY,
        webhook_url=f"{live_server.url}/api/v1/payments/webhooks/sandbox",
        settlement_dir=tmp_path / "settlements",
        retry_backoff_s=0.02,
    )
    server.start()
    connectors.register(
        SandboxConnector(base_url=server.url, api_key=API_KEY, webhook_secret=SECRET)
    )
    previous = payments.set_rules(auto_approve_up_to=5_000)  # $100 needs a second person
    try:
        yield server
    finally:
        payments.RULES = previous
        server.stop()
        connectors.unregister("sandbox")


class Platform:
    """The bridge from the simulator to the bus, and the consumers the journey needs."""

    def __init__(self, port: int) -> None:
        self.bus = get_bus()
        self.control = SimulatorAdapter(SERVER, port=port)
        self.control.connect()
        self.ingest = register("test.journey.ingest", [stream_name(SERVER)], apply_messages)
        consumers = autodiscover()
        self.partners = [consumers["partners.accrue_deals"], consumers["partners.record_funding"]]
        self.stop = threading.Event()
        self.bridge = Bridge(
            SERVER,
            SimulatorAdapter(SERVER, port=port),
            self.bus.publish,
            MemoryCheckpointStore(),
            BridgeConfig(batch_wait=0.02, backoff_initial=0.05),
        )
        self.thread = threading.Thread(target=self.bridge.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def trade(self, login: int) -> int:
        """0.1 lot of EURUSD bought and sold at a small loss; the closing deal's ticket."""
        opened = self.control.control(
            "trade_open", login=login, symbol="EURUSD", action=0, volume=1_000
        )
        ask = round(opened["Price"] * 10**5)
        self.control.control("set_price", symbol="EURUSD", bid=(ask - 120) / 10**5)
        closed = self.control.control("trade_close", position=opened["PositionID"])
        return int(closed["Deal"])

    def deliver(self, ticket: int) -> None:
        """Ingest platform events until ``ticket`` is stored, then run the IB accrual."""
        deadline = time.monotonic() + 15
        while not TradingDeal.objects.filter(server=SERVER, deal=ticket).exists():
            assert time.monotonic() < deadline, f"deal {ticket} never arrived"
            drain(self.bus, [self.ingest])
            time.sleep(0.05)
        drain(self.bus, [self.ingest, *self.partners])

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.control.disconnect()
        unregister("test.journey.ingest")


def totp_code(secret: str) -> str:
    counters = list(yield_hotp_counters_from_time())
    return format_hotp_value(hotp_value(secret, counters[len(counters) // 2]))


def staff_member(email: str, role: Role) -> str:
    """A staff user with a second factor; returns the TOTP secret."""
    user = verified_user(email=email)
    grant_role(user, role)
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    return secret


def sign_in(page: Any, base: str, email: str, totp_secret: str | None = None) -> None:
    page.context.clear_cookies()
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("E-mail address or username").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    if totp_secret:
        page.wait_for_url(re.compile(r".*/accounts/2fa/authenticate/.*"))
        page.locator("input[name=code]").fill(totp_code(totp_secret))
        page.get_by_role("button", name="Sign In").click()
    # Wait until the sign-in has really gone through: a page.goto() right after the click can
    # abort the form's POST in flight and leave the session half signed in.
    page.wait_for_url(lambda url: "/accounts/login/" not in url and "/accounts/2fa/" not in url)
    page.wait_for_load_state()


def axe(page: Any, name: str) -> None:
    """No serious or critical accessibility violations (axe-core, WCAG 2 A and AA rules)."""
    page.add_script_tag(url="/static/vendor/axe-core/axe.min.js")
    found = page.evaluate(
        "async () => (await axe.run(document, {runOnly: ['wcag2a', 'wcag2aa']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))}))"
    )
    bad = [v for v in found if v["impact"] in IMPACTS]
    assert not bad, f"{name}: {bad}"


def check(page: Any, shots: Path, name: str) -> None:
    """Screenshot at both widths (nothing wider than a phone) and run axe."""
    snap(page, shots, name)
    axe(page, name)


def keyboard_reaches(page: Any, text: str, limit: int = 40) -> bool:
    """Tabbing from the top of the page reaches a control whose text contains ``text``."""
    page.locator("body").focus()
    for _ in range(limit):
        page.keyboard.press("Tab")
        label = page.evaluate("document.activeElement && document.activeElement.innerText || ''")
        if text in label:
            return True
    return False


def test_the_client_journey_from_referral_to_approved_withdrawal(
    live_server: Any,
    tab: Any,
    shot_dir: Path,
    simulator: Any,
    psp: SandboxPSP,
    tmp_path: Path,
    settings: Any,
) -> None:
    settings.DOCUMENTS_DIR = tmp_path / "documents"
    page, shots = tab, shot_dir
    base = live_server.url
    ib_user = verified_user(email="ib@example.com")
    ib = make_ib(code="harbour", user_id=ib_user.pk)
    plan_for(ib, code="harbour-plan")
    partners.create_link(ib.pk, by="system:test", code="harbour-link")
    officer = staff_member("officer@example.com", Role.COMPLIANCE_OFFICER)
    finance = staff_member("finance@example.com", Role.FINANCE)
    support = staff_member("support@example.com", Role.SUPPORT)
    platform = Platform(simulator.port)
    try:
        # A visitor lands on the site and comes through the IB's referral link.
        page.goto(f"{base}/")
        check(page, shots, "00-landing")
        page.goto(f"{base}/portal/join/harbour-link/")
        page.wait_for_url(f"{base}/accounts/signup/")
        page.get_by_label("First name").fill("Andreas")
        page.get_by_label("Last name").fill("Constantinou")
        page.get_by_label("Email").fill("andreas@example.com")
        page.get_by_label("Date of birth").fill("1988-11-02")
        page.get_by_label("Country of residence").select_option("CY")
        page.get_by_label("Account with").select_option("cysec")
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_label("Password (again)").fill(PASSWORD)
        check(page, shots, "01-signup")
        page.get_by_role("button", name="Sign Up").click()
        page.wait_for_url(f"{base}/accounts/confirm-email/")

        # Verify the e-mail address, then sign in.
        link = re.search(r"https?://\S+/accounts/confirm-email/[^/\s]+/", mail.outbox[-1].body)
        assert link, mail.outbox[-1].body
        page.goto(link.group(0))
        page.get_by_role("button", name="Confirm").click()
        page.wait_for_url(re.compile(r".*/accounts/login/.*"))
        sign_in(page, base, "andreas@example.com")
        page.wait_for_url(f"{base}/portal/")
        assert page.get_by_test_id("kyc").get_by_text("Not started").is_visible()
        client_id = Client.objects.get(email="andreas@example.com").pk
        assert attributed_ib_code(client_id) == "harbour"  # the referral link's first touch
        check(page, shots, "02-portal-dashboard")

        # Upload KYC documents and send them for checking.
        page.get_by_role("link", name="Verification", exact=True).first.click()
        page.wait_for_url(f"{base}/portal/verification/")
        check(page, shots, "03-kyc-empty")
        upload(page, "passport", "passport.png", b"a", expires_on="2034-05-01")
        upload(page, "proof_of_address", "bill.png", b"b", issued_on=_days_ago(10))
        page.get_by_role("button", name="Send for verification").click()
        assert page.get_by_test_id("kyc-state").get_attribute("data-state") == (
            "under_verification"
        )
        check(page, shots, "04-kyc-submitted")

        # A compliance officer approves the file in the back office.
        sign_in(page, base, "officer@example.com", officer)
        page.goto(f"{base}/backoffice/kyc/")
        page.get_by_role("link", name=re.compile("Andreas Constantinou")).first.click()
        page.locator("#id_decision").select_option("approve")
        page.locator("#id_reason").fill("Passport and utility bill match.")
        page.get_by_role("button", name="Record decision").click()
        page.wait_for_url(f"{base}/backoffice/kyc/")
        snap(page, shots, "30-backoffice-kyc-queue")  # the back office's own checks are its

        # The client deposits $1,000 through the sandbox PSP's hosted page.
        sign_in(page, base, "andreas@example.com")
        page.goto(f"{base}/portal/wallets/deposit/")
        check(page, shots, "05-deposit")
        page.get_by_label("Amount").fill("1000")
        page.get_by_label("Currency").select_option("USD")
        page.get_by_role("button", name="Continue to payment").click()
        page.wait_for_url(re.compile(r".*/portal/wallets/deposits/.*"))
        check(page, shots, "06-deposit-waiting")
        with page.expect_popup() as opened:
            page.get_by_role("link", name=re.compile("Pay now")).click()
        psp_page = opened.value
        # Wait for the PSP's answer page (its webhook to us is sent before it answers) before
        # closing: closing the page with that POST still in flight once hung under load.
        with psp_page.expect_navigation(timeout=60_000):
            psp_page.get_by_role("button", name="complete").click()
        psp_page.close()
        state = page.get_by_test_id("deposit-state")
        page.wait_for_function(
            "document.querySelector('[data-testid=deposit-state]').dataset.state === 'confirmed'",
            timeout=15_000,
        )
        assert state.inner_text() == "Received"
        check(page, shots, "07-deposit-received")

        # Open a live account and move $600 to it.
        page.goto(f"{base}/portal/accounts/")
        page.get_by_label("Live (real money)").check()
        page.get_by_role("button", name="Open account").click()
        page.wait_for_url(f"{base}/portal/accounts/")
        login = int(page.get_by_test_id("accounts").locator("td.mono").first.inner_text())
        check(page, shots, "08-accounts")
        page.goto(f"{base}/portal/accounts/transfer/")
        page.get_by_label("From my wallet to a trading account").check()
        page.get_by_label("Amount").fill("600")
        check(page, shots, "09-transfer")
        page.get_by_role("button", name="Transfer", exact=True).click()
        assert page.get_by_text("600.00\xa0USD were transferred.").is_visible()
        assert platform.control.account_state(login).balance == 60_000

        # The client trades on the platform; the deals appear in the trading history.
        ticket = platform.trade(login)
        platform.deliver(ticket)
        page.goto(f"{base}/portal/history/")
        deals = page.get_by_test_id("deals")
        assert deals.get_by_text(f"#{ticket}").is_visible()
        assert deals.get_by_text("EURUSD").count() == 2  # opened and closed
        check(page, shots, "10-history")
        page.goto(f"{base}/portal/wallets/")
        assert "400.00" in page.get_by_test_id("balances").inner_text()
        check(page, shots, "11-wallets")

        # A withdrawal of $100: reviewed, then confirmed; it waits for a second person.
        page.goto(f"{base}/portal/wallets/withdraw/")
        page.get_by_label("Amount").fill("100")
        page.get_by_role("button", name="Review withdrawal").click()
        assert page.get_by_test_id("withdraw-review").get_by_text("100.00\xa0USD").is_visible()
        check(page, shots, "12-withdraw-review")
        page.get_by_role("button", name="Confirm withdrawal").click()
        page.wait_for_url(f"{base}/portal/wallets/")
        assert page.get_by_text("Status: Waiting for approval.").is_visible()
        # The language switch: the same wallet in German, amounts with German separators.
        page.goto(f"{base}/portal/wallets/")
        page.get_by_label("Language").select_option("de")
        page.wait_for_function("document.documentElement.lang === 'de'")
        german = page.get_by_test_id("balances").inner_text()
        assert "300,00" in german and "100,00" in german  # cash, and locked for the withdrawal
        check(page, shots, "15-wallets-de")
        page.locator("#language-switch").select_option("en")
        page.wait_for_function("document.documentElement.lang === 'en'")
        page.goto(f"{base}/portal/statements/")
        check(page, shots, "13-statements")
        page.goto(f"{base}/portal/profile/")
        check(page, shots, "14-profile")
        assert keyboard_reaches(page, "Save")

        # A support agent may not open the withdrawals queue.
        sign_in(page, base, "support@example.com", support)
        response = page.goto(f"{base}/backoffice/withdrawals/")
        assert response is not None and response.status == 403

        # A finance officer — not the requester — approves it.
        sign_in(page, base, "finance@example.com", finance)
        page.goto(f"{base}/backoffice/withdrawals/")
        snap(page, shots, "31-backoffice-withdrawals")
        card = page.locator("article.bo-wd").filter(has_text="Andreas Constantinou")
        card.get_by_label("Decision", exact=True).select_option("approve")
        card.get_by_label("Reason", exact=True).fill("Return to source, verified client.")
        card.get_by_role("button", name="Record decision").click()
        card.get_by_text("the withdrawal is now approved").wait_for(timeout=10_000)
        (withdrawal,) = payment_queries.withdrawals_of(client_id)
        assert (withdrawal.status, withdrawal.amount) == ("approved", 10_000)
        assert withdrawal.approved_by != withdrawal.requested_by

        # The IB sees the client and the commission on the trade.
        sign_in(page, base, "ib@example.com")
        page.goto(f"{base}/partners/")
        stats = " ".join(page.get_by_test_id("ib-stats").text_content().split())
        assert "Commissions earned 0.70 USD" in stats, stats  # $7 a lot, 0.1 lot
        check(page, shots, "20-ib-dashboard")
        page.goto(f"{base}/partners/clients/")
        page.get_by_role("link", name="Andreas C.").click()
        assert page.get_by_test_id("client-deals").get_by_text("EURUSD").is_visible()
        check(page, shots, "21-ib-client-deals")
        page.goto(f"{base}/partners/links/")
        check(page, shots, "22-ib-links")
        page.goto(f"{base}/partners/tree/")
        check(page, shots, "23-ib-tree")
        page.goto(f"{base}/partners/payouts/")
        check(page, shots, "24-ib-payouts")
    finally:
        platform.close()


def _days_ago(days: int) -> str:
    from datetime import timedelta

    from brokerdesk.core import clock

    return (clock.now().date() - timedelta(days=days)).isoformat()


def upload(
    page: Any,
    doc_type: str,
    name: str,
    salt: bytes,
    *,
    expires_on: str = "",
    issued_on: str = "",
) -> None:
    """Upload one document through the verification page's form."""
    from tests.web.test_portal_pages import png

    page.get_by_label("Document type").select_option(doc_type)
    page.get_by_label("File").set_input_files(
        {"name": name, "mimeType": "image/png", "buffer": png() + salt}
    )
    if issued_on:
        page.get_by_label("Issue date").fill(issued_on)
    if expires_on:
        page.get_by_label("Expiry date").fill(expires_on)
    page.get_by_role("button", name="Upload").click()
    page.wait_for_url(re.compile(r".*/portal/verification/$"))
