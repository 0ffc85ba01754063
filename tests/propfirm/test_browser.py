"""The review of dealer corrections in a real browser (Playwright driving Debian's Chromium):
a dealer finds the queue from the challenges page, is told a note is needed, closes one with
a note and sees it among the reviewed; every page fits a phone."""

from __future__ import annotations

from pathlib import Path

import pytest

from brokerdesk.propfirm.models import PhaseDealCorrection
from brokerdesk.staff.roles import Role
from tests.automations.test_browser import sign_in_as
from tests.clients.factories import user
from tests.propfirm.test_correction_pages import flagged_breach, flagged_pass
from tests.web.test_browser import CHROMIUM, page, shots, snap  # noqa: F401 - fixtures

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]


def test_a_dealer_closes_a_flagged_correction_with_a_note(live_server, page, shots: Path, platform):  # noqa: F811
    base = live_server.url
    breach = flagged_breach(platform)
    flagged_pass(platform)
    dealer = user(Role.DEALING)
    dealer.email = "dealer@example.com"
    dealer.save(update_fields=["email"])
    sign_in_as(page, base, dealer)

    page.goto(f"{base}/backoffice/prop/")
    page.get_by_role("link", name="Corrections to review 2").click()
    page.wait_for_url(f"{base}/backoffice/prop/corrections/")
    card = page.locator(f"#correction-{breach.pk}")
    assert card.get_by_text("Failed, but the corrected figures show no breach").is_visible()
    pnl = " ".join(card.get_by_test_id("pnl").inner_text().split())
    assert pnl == "-600.00 USD → corrected to -300.00 USD", pnl
    snap(page, shots, "prop-01-corrections")

    card.get_by_role("button", name="Close as reviewed").click()
    card = page.locator(f"#correction-{breach.pk}")
    assert card.get_by_text("Write a note: what you checked and what you did.").is_visible()
    snap(page, shots, "prop-02-note-missing")
    assert PhaseDealCorrection.objects.get(pk=breach.pk).reviewed_at is None

    card.get_by_label("What did you do about it?").fill(
        "Checked the platform: the loss was 300.00. Reinstated the phase by hand."
    )
    card.get_by_role("button", name="Close as reviewed").click()
    assert page.get_by_text(f"The correction of deal #{breach.deal}").is_visible()
    reviewed = page.get_by_test_id("corrections-reviewed")
    assert reviewed.get_by_text("Reinstated the phase by hand.", exact=False).is_visible()
    assert reviewed.get_by_text("dealer@example.com").is_visible()
    assert page.locator("[data-correction]").count() == 2  # one still queued, one reviewed
    snap(page, shots, "prop-03-reviewed")
    assert PhaseDealCorrection.objects.get(pk=breach.pk).reviewed_by == f"user:{dealer.pk}"
