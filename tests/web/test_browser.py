"""Real-browser journeys (Playwright driving Debian's Chromium against a live server).

Screenshots of every page go to ``$WEB_SCREENSHOTS`` (a temporary directory by default), at
desktop and phone widths, so a person can look at them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.db import connections

from brokerdesk.clients.models import Client
from brokerdesk.staff.roles import Role, grant_role
from tests.web.conftest import PASSWORD, fund, verified_user

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]


@pytest.fixture
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go."""
    target = os.environ.get("WEB_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A page in a fresh Chromium profile (Playwright never downloads a browser of its own)."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
    # between page actions are ordinary synchronous calls.
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
            connections.close_all()  # the ones this test's ORM calls opened under Playwright


def snap(page: Any, shots: Path, name: str) -> None:
    """Screenshot the full page at desktop and phone widths; on a phone nothing may overflow."""
    assert page.evaluate("typeof window.htmx") == "object", "htmx did not load"
    page.set_viewport_size(DESKTOP)
    page.screenshot(path=str(shots / f"{name}-desktop.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(shots / f"{name}-phone.png"), full_page=True)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{name}: the page is {overflow}px wider than a phone"
    page.set_viewport_size(DESKTOP)


def sign_in(page: Any, base: str, email: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("E-mail address or username").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()


def test_a_client_signs_up_verifies_signs_in_and_sees_the_dashboard(live_server, page, shots):
    base = live_server.url
    page.goto(f"{base}/accounts/signup/")
    snap(page, shots, "01-signup")
    page.get_by_label("First name").fill("Andreas")
    page.get_by_label("Last name").fill("Constantinou")
    page.get_by_label("Email").fill("andreas@example.com")
    page.get_by_label("Date of birth").fill("1988-11-02")
    page.get_by_label("Country of residence").select_option("CY")
    page.get_by_label("Account with").select_option("cysec")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password (again)").fill(PASSWORD)
    page.get_by_role("button", name="Sign Up").click()

    page.wait_for_url(f"{base}/accounts/confirm-email/")
    snap(page, shots, "02-verification-sent")
    assert len(mail.outbox) == 1
    link = re.search(r"https?://\S+/accounts/confirm-email/[^/\s]+/", mail.outbox[0].body)
    assert link, mail.outbox[0].body

    page.goto(link.group(0))
    snap(page, shots, "03-confirm-email")
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url(re.compile(r".*/accounts/login/.*"))

    client_id = Client.objects.get(email="andreas@example.com").pk
    fund(client_id, 123456, "USD")
    fund(client_id, 2500, "USD", bucket="bonus")
    fund(client_id, 99900, "EUR")

    snap(page, shots, "04-login")
    sign_in(page, base, "andreas@example.com")
    page.wait_for_url(f"{base}/portal/")
    snap(page, shots, "05-portal-dashboard")

    assert page.get_by_role("heading", name="Welcome, Andreas Constantinou").is_visible()
    assert page.get_by_test_id("kyc").get_by_text("Not started").is_visible()
    page.goto(f"{base}/partners/")
    snap(page, shots, "12-partners")
    page.goto(f"{base}/portal/")
    rows = [
        " ".join(row.inner_text().split())
        for row in page.locator("[data-testid=balances] tbody tr").all()
    ]
    assert rows == [
        "EUR Cash 999.00 999.00 —",
        "USD Bonus 25.00 25.00 —",
        "USD Cash 1,234.56 1,234.56 —",
    ]


def test_staff_are_forced_to_set_up_two_factor_authentication(live_server, page, shots):
    from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
    from allauth.mfa.totp.internal.auth import yield_hotp_counters_from_time as counters

    base = live_server.url
    staff = verified_user(email="officer@example.com")
    grant_role(staff, Role.COMPLIANCE_OFFICER)

    sign_in(page, base, "officer@example.com")
    page.wait_for_url(re.compile(r".*/accounts/reauthenticate/.*"))  # on the way to set-up
    snap(page, shots, "06-staff-reauthenticate")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Confirm").click()

    page.wait_for_url(re.compile(r".*/accounts/2fa/totp/activate/.*"))
    snap(page, shots, "07-staff-totp-activate")
    secret = page.locator("#authenticator_secret").input_value()
    now = list(counters())
    page.get_by_label("Authenticator code").fill(
        format_hotp_value(hotp_value(secret, now[len(now) // 2]))
    )
    page.get_by_role("button", name="Activate").click()

    page.wait_for_url(re.compile(r".*/accounts/2fa/recovery-codes/.*"))
    snap(page, shots, "08-staff-recovery-codes")
    page.goto(f"{base}/backoffice/")
    assert page.get_by_role("heading", name="Dashboard").is_visible()
    assert page.get_by_text("Compliance officer").is_visible()
    snap(page, shots, "09-backoffice-dashboard")
    page.goto(f"{base}/accounts/2fa/")
    snap(page, shots, "10-mfa-index")
    page.goto(f"{base}/accounts/2fa/webauthn/add/")  # security keys: allauth's own script
    assert page.get_by_role("heading", name="Add Security Key").is_visible()
    snap(page, shots, "11-webauthn-add")
