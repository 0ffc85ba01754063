"""The inbox and the preferences in a real browser (Playwright driving Debian's Chromium):
a message is marked read through htmx; both pages fit a phone."""

from __future__ import annotations

from pathlib import Path

import pytest

from brokerdesk.notifications import services
from brokerdesk.notifications.models import Notification, Preference
from tests.automations.test_browser import sign_in_as
from tests.notifications.conftest import person
from tests.web.test_browser import CHROMIUM, page, shots, snap  # noqa: F401 - fixtures

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]


def test_a_client_reads_a_message_and_turns_off_bonus_emails(live_server, page, shots: Path):  # noqa: F811
    base = live_server.url
    client = person()
    for key, kind in (("a", "deposit_received"), ("b", "bonus_granted")):
        services.notify(
            client_id=client.pk,
            kind=kind,
            context={"amount": 250_000, "currency": "USD", "campaign": "Welcome"},
            idempotency_key=key,
        )
    sign_in_as(page, base, client.user)

    page.goto(f"{base}/portal/notifications/")
    assert page.get_by_text("2 unread messages").is_visible()
    snap(page, shots, "notif-01-inbox")
    page.get_by_role("button", name="Mark “You received a bonus of 2,500.00 USD” read").click()
    page.locator("[data-read='1']").wait_for()
    assert Notification.objects.filter(read_at__isnull=True).count() == 1

    page.get_by_role("link", name="Preferences").click()
    page.get_by_label("E-mail for Bonus granted").uncheck()
    page.get_by_label("Language of e-mails and messages").select_option("de")
    snap(page, shots, "notif-02-preferences")
    page.get_by_role("button", name="Save preferences").click()
    assert page.get_by_text("Your notification preferences were saved.").is_visible()
    pref = Preference.objects.get(user_id=client.user.pk)
    assert pref.language == "de" and pref.channels["bonus_granted"]["email"] is False
