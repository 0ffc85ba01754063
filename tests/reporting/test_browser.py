"""The Reports and Operations pages in a real browser (Chromium), at desktop and phone widths."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from tests.clients.factories import user
from tests.partners.conftest import verified_client
from tests.reporting.conftest import DAY1, DAY2, open_account, outbox_messages, project, trade
from tests.web.test_browser import CHROMIUM, page, shots, snap  # noqa: F401 - fixtures

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]


def sign_in_as(page: Any, base: str, *roles: str) -> None:  # noqa: F811 - the fixture
    """Give the browser the session of a staff user holding ``roles``."""
    http = Client()
    http.force_login(user(*roles))
    cookie = http.cookies[settings.SESSION_COOKIE_NAME].value
    page.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": base}])


def test_reports_and_operations_pages_work_in_a_browser(live_server, page, shots):  # noqa: F811
    login = open_account(verified_client())
    trade(login, at=DAY1, volume=30_000, profit=4_200)
    trade(login, at=DAY2, volume=10_000, profit=-1_000)
    project(outbox_messages())
    base = live_server.url
    sign_in_as(page, base, "finance", "auditor")

    page.goto(f"{base}/backoffice/reports/")
    snap(page, shots, "reporting-01-reports")
    page.get_by_role("link", name="Deposits and volume by IB by day").click()
    page.get_by_label("From", exact=True).fill(DAY1.date().isoformat())
    page.get_by_label("To", exact=True).fill(DAY2.date().isoformat())
    page.get_by_label("To", exact=True).press("Enter")
    page.wait_for_selector('[data-testid="report-table"]')
    assert page.evaluate("typeof window.Chart") == "function"
    snap(page, shots, "reporting-02-ib-daily")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    assert download.value.suggested_filename == "ib-daily_2026-03-02_2026-03-03.csv"

    page.goto(f"{base}/backoffice/operations/")
    assert page.get_by_role("heading", name="Read-model freshness").is_visible()
    snap(page, shots, "reporting-03-operations")
