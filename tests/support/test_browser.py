"""The support pages in a real browser (Debian's Chromium): a client opens a ticket with the
keyboard-labelled form, staff answer it from the queue; screenshots at desktop and phone
widths, and nothing overflows a phone."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client as HttpClient

from brokerdesk.staff.roles import Role
from brokerdesk.support import services
from brokerdesk.support.models import Ticket
from tests.support.conftest import client_with_login, staff
from tests.web.test_browser import CHROMIUM, page, shots, snap  # noqa: F401 - fixtures

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]


def _sign_in_as(page: Any, base: str, user: Any) -> None:  # noqa: F811 - the fixture
    """Give the browser a session of ``user`` (made with force_login, no password form)."""
    http = HttpClient()
    http.force_login(user)
    cookie = http.cookies["sessionid"]
    page.context.clear_cookies()
    page.context.add_cookies([{"name": "sessionid", "value": cookie.value, "url": base}])


def test_a_client_opens_a_ticket_and_staff_answer_it(live_server, page, shots):  # noqa: F811
    base = live_server.url
    client, login = client_with_login(email="browser.client@example.com")
    agent = staff(Role.SUPPORT)

    _sign_in_as(page, base, login)
    page.goto(f"{base}/portal/support/")
    snap(page, shots, "support-01-portal-empty")
    page.get_by_role("link", name="New ticket").first.click()
    page.get_by_label("What is it about?").select_option("withdrawals")
    page.get_by_label("Subject").fill("Withdrawal not received")
    page.get_by_label("Your message").fill("I asked for 200 USD on Monday.")
    snap(page, shots, "support-02-portal-new")
    page.get_by_role("button", name="Send").click()
    page.wait_for_url(f"{base}/portal/support/*/")
    ticket = Ticket.objects.get()
    assert page.get_by_test_id("status").inner_text().strip() == "New"
    snap(page, shots, "support-03-portal-thread")

    services.add_note(ticket.id, body="Checked the PSP dashboard.", by=agent)
    _sign_in_as(page, base, agent)
    page.goto(f"{base}/backoffice/tickets/")
    snap(page, shots, "support-04-backoffice-queues")
    page.get_by_role("link", name=f"{ticket.reference} Withdrawal not received").click()
    page.get_by_label("Your reply").fill("It was sent today; expect it within two days.")
    page.get_by_label("Then").select_option("pending_client")
    page.get_by_role("button", name="Send reply").click()
    page.wait_for_url(f"{base}/backoffice/tickets/{ticket.id}/")
    assert page.get_by_test_id("status").inner_text().strip() == "Pending client"
    snap(page, shots, "support-05-backoffice-ticket")

    _sign_in_as(page, base, login)
    page.goto(f"{base}/portal/support/{ticket.id}/")
    body = page.locator("main").inner_text()
    assert "expect it within two days" in body and "PSP dashboard" not in body
    assert page.get_by_test_id("status").inner_text().strip() == "Waiting for you"
    del client
