"""The main staff screens in a real browser (Playwright driving Debian's Chromium): a staff
member signs in with their authenticator, works the queues, and every page passes an axe-core
check (no serious or critical violation) and fits a phone. Screenshots go to
``/tmp/shots/backoffice`` (or ``$WEB_SCREENSHOTS/backoffice``) at desktop and phone widths."""

from __future__ import annotations

import os
import re
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

from brokerdesk.compliance import queries as compliance_queries
from brokerdesk.compliance import services as compliance
from brokerdesk.core import clock
from brokerdesk.partners import services as partners
from brokerdesk.payments import queries as payment_queries
from brokerdesk.payments import services as payments
from brokerdesk.staff.roles import Role, grant_role
from tests.payments.conftest import local_psp  # noqa: F401 - fixture
from tests.web.conftest import PASSWORD, verified_user
from tests.web.test_backoffice import (
    client_under_verification,
    pending_withdrawal,
    trading_exception,
)
from tests.web.test_browser import CHROMIUM, DESKTOP, PHONE, page, snap  # noqa: F401 - fixture

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]

SERIOUS = ("serious", "critical")


@pytest.fixture
def shots() -> Path:
    """Where this module's screenshots go (kept after the run so a person can look)."""
    base = os.environ.get("WEB_SCREENSHOTS", "/tmp/shots")  # noqa: S108 - a known place to look
    path = Path(base) / "backoffice"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(autouse=True)
def documents_dir(settings: Any, tmp_path: Any) -> Any:
    """Documents go to a per-test directory."""
    settings.DOCUMENTS_DIR = tmp_path / "documents"
    return settings.DOCUMENTS_DIR


def totp_code(secret: str) -> str:
    """The authenticator's current code."""
    counters = list(yield_hotp_counters_from_time())
    return format_hotp_value(hotp_value(secret, counters[len(counters) // 2]))


def staff_with_authenticator(email: str, *roles: Role) -> tuple[Any, str]:
    """A staff member with a TOTP authenticator (the back office requires one)."""
    user = verified_user(email=email)
    grant_role(user, *roles)
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    return user, secret


def sign_in_with_code(tab: Any, base: str, email: str, secret: str) -> None:
    """Password, then the authenticator code."""
    tab.goto(f"{base}/accounts/login/")
    tab.get_by_label("E-mail address or username").fill(email)
    tab.get_by_label("Password").fill(PASSWORD)
    tab.get_by_role("button", name="Sign In").click()
    tab.wait_for_url(re.compile(r".*/accounts/2fa/authenticate/.*"))
    tab.locator("input[name=code]").fill(totp_code(secret))
    tab.get_by_role("button", name="Sign In").click()
    tab.wait_for_url(f"{base}/backoffice/")


def check_accessibility(tab: Any, base: str, name: str) -> None:
    """Run axe-core on the page; no serious or critical violation may remain."""
    tab.add_script_tag(url=f"{base}/static/vendor/axe-core/axe.min.js")
    violations = tab.evaluate(
        """async () => {
            const result = await axe.run(document, {resultTypes: ["violations"]});
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 3).map(n => n.target.join(" ")),
            }));
        }"""
    )
    serious = [v for v in violations if v["impact"] in SERIOUS]
    assert serious == [], f"{name}: {serious}"


def wider_than_a_phone(tab: Any) -> list[str]:
    """The elements that stick out of a phone-wide page (to say what to fix)."""
    tab.set_viewport_size(PHONE)
    found = tab.evaluate(
        """() => {
            const clipped = e => {
                for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) {
                    if (getComputedStyle(p).overflowX !== "visible") return true;
                }
                return false;
            };
            return [...document.querySelectorAll("body *")]
            .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && !clipped(e))
            .slice(0, 8)
            .map(e => `${e.tagName}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`);
        }"""
    )
    tab.set_viewport_size(DESKTOP)
    return list(found)


def shoot(tab: Any, base: str, shots: Path, name: str) -> None:
    """Check the page (axe-core, phone width) and screenshot it at both widths."""
    check_accessibility(tab, base, name)
    assert wider_than_a_phone(tab) == [], name
    snap(tab, shots, name)


def visit(tab: Any, base: str, shots: Path, path: str, name: str) -> None:
    """Open a page, check it, screenshot it at both widths."""
    tab.goto(f"{base}{path}")
    tab.wait_for_load_state("networkidle")
    shoot(tab, base, shots, name)


def seed_queues(psp: Any) -> dict[str, Any]:
    """One item in every staff queue."""
    person = client_under_verification(first_name="Eleni", last_name="Charalambous")
    maker = verified_user(email="maker@example.com")
    grant_role(maker, Role.FINANCE)
    withdrawal = pending_withdrawal(psp, requested_by=maker)
    compliance.record_transaction(
        "browser-large",
        client_id=withdrawal.client_id,
        kind="deposit",
        amount=1_100_000,
        currency="USD",
        occurred_at=clock.now(),
    )
    payments.import_bank_statement(
        "transaction_id,amount,currency,remittance\nBNK-900,75000,USD,salary June\n"
    )
    trading_exception()
    top = partners.create_ib(code="harbour", name="Harbour Partners", by="system:test")
    child = partners.create_ib(
        code="harbour-east", name="Harbour East", parent_id=top.pk, by="system:test"
    )
    for n in (1, 2, 3):
        partners.adjust(
            child.pk, 4_250, by="system:test", reason="launch campaign", request_key=f"b-{n}"
        )
    return {"person": person, "withdrawal": withdrawal, "ib": child}


def test_staff_work_the_queues_in_a_browser(live_server, page, shots, local_psp):  # noqa: F811 - fixtures
    base = live_server.url
    seeded = seed_queues(local_psp)
    _, secret = staff_with_authenticator("head@example.com", Role.ADMIN)
    page.emulate_media(reduced_motion="reduce")
    sign_in_with_code(page, base, "head@example.com", secret)

    visit(page, base, shots, "/backoffice/", "01-dashboard")
    assert page.get_by_role("heading", name="Dashboard").is_visible()
    assert page.locator("#money-chart").bounding_box()["height"] > 100  # Chart.js drew
    page.get_by_text("Figures as a table").click()
    assert page.get_by_test_id("daily").is_visible()

    # KYC review with the document viewer
    visit(page, base, shots, "/backoffice/kyc/", "02-kyc-queue")
    page.get_by_role("link", name="Review Eleni Charalambous").click()
    page.get_by_role("link", name="View passport").click()
    image = page.get_by_role("img", name="The client's passport")
    image.wait_for()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )
    assert page.evaluate("img => img.naturalWidth", image.element_handle()) == 240
    shoot(page, base, shots, "03-kyc-review")
    first_doc = page.get_by_test_id("documents").locator("li").first
    first_doc.get_by_label("Document decision").select_option("1")
    first_doc.get_by_role("button", name="Save document decision").click()
    page.get_by_test_id("documents").locator(".badge", has_text="accepted").first.wait_for()
    page.get_by_label("Decision", exact=True).select_option("approve")
    page.get_by_label("Reason").fill("identity and address match")
    page.get_by_role("button", name="Record decision").click()
    page.wait_for_url(f"{base}/backoffice/kyc/")
    assert page.get_by_text("KYC decision recorded").is_visible()
    assert compliance_queries.kyc_status(seeded["person"].pk).state == "approved"

    # withdrawal approval (the signed-in member is not the requester)
    visit(page, base, shots, "/backoffice/withdrawals/", "04-withdrawals")
    card = page.locator(f"#wd-{seeded['withdrawal'].id}")
    assert card.locator("[data-risk=medium]").is_visible()
    card.get_by_label("Decision").select_option("approve")
    card.get_by_label("Reason").fill("source of funds documented")
    card.get_by_role("button", name="Record decision").click()
    page.get_by_text("Decision recorded: the withdrawal is now approved.").wait_for()
    assert payment_queries.get_withdrawal(seeded["withdrawal"].id).status == "approved"

    visit(page, base, shots, "/backoffice/aml/", "05-aml")
    visit(page, base, shots, "/backoffice/reconciliation/", "06-reconciliation")
    visit(page, base, shots, "/backoffice/commissions/", "07-commissions")
    visit(page, base, shots, "/backoffice/ibs/", "08-ibs")
    visit(page, base, shots, f"/backoffice/ibs/{seeded['ib'].pk}/", "09-ib-detail")
    visit(page, base, shots, "/backoffice/clients/", "10-clients")
    page.get_by_label("Name, e-mail or client id").fill("charalamb")
    page.get_by_test_id("client-results").get_by_text("Eleni Charalambous").wait_for()
    page.get_by_role("link", name="Eleni Charalambous").click()
    page.wait_for_url(re.compile(r".*/backoffice/clients/[0-9a-f-]+/"))
    page.wait_for_load_state("networkidle")
    shoot(page, base, shots, "11-client")
    visit(page, base, shots, "/backoffice/audit/", "12-audit")
    page.get_by_role("button", name="Verify the chains now").click()
    page.locator("[data-testid=chain-status][data-ok=true]").wait_for()
    snap(page, shots, "12-audit")


def test_a_role_without_the_screen_sees_a_clear_refusal(live_server, page, shots):  # noqa: F811
    base = live_server.url
    _, secret = staff_with_authenticator("dealer@example.com", Role.DEALING)
    sign_in_with_code(page, base, "dealer@example.com", secret)

    response = page.goto(f"{base}/backoffice/kyc/")

    assert response.status == 403
    assert page.get_by_text("This page is not part of your role.").is_visible()
    assert page.get_by_role("link", name="KYC reviews").count() == 0  # not in the menu
    shoot(page, base, shots, "13-forbidden")
