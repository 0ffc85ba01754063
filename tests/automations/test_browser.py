"""The no-code rule editor in a real browser (Playwright driving Debian's Chromium): rows are
added and an action's parameters appear through htmx; every page fits a phone."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from brokerdesk.automations.models import Rule
from tests.automations.test_pages import failed_run
from tests.clients.factories import user
from tests.web.test_browser import CHROMIUM, page, shots, snap  # noqa: F401 - fixtures

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]


def sign_in_as(page: Any, base: str, account: Any) -> None:  # noqa: F811 - the fixture
    """Put a signed-in session of ``account`` into the browser."""
    web = Client()
    web.force_login(account)
    cookie = web.cookies["sessionid"].value
    page.context.add_cookies([{"name": "sessionid", "value": cookie, "url": base}])


def test_an_administrator_builds_a_rule_without_code(live_server, page, shots: Path, platform):  # noqa: F811
    base = live_server.url
    sign_in_as(page, base, user("admin"))

    page.goto(f"{base}/backoffice/automations/new/")
    page.get_by_label("Name").fill("Large German deposits")
    page.get_by_label("When this happens").select_option("deposit.confirmed")
    first = page.locator("#conditions fieldset").first
    first.get_by_label("Field").fill("client.country")
    first.get_by_label("Test").select_option("in")
    first.get_by_label("Value").fill("DE, AT")
    page.get_by_role("button", name="Add a condition").click()
    second = page.locator("#conditions fieldset").nth(1)
    second.get_by_label("Field").wait_for()
    second.get_by_label("Field").fill("event.amount")
    second.get_by_label("Test").select_option("gte")
    second.get_by_label("Value").fill("1000000")
    page.locator("#actions select").first.select_option("open_edd_ticket")
    page.get_by_label("Subject").fill("Large deposit from Germany")  # appeared through htmx
    snap(page, shots, "auto-01-editor")
    page.get_by_role("button", name="Save the rule").click()

    page.wait_for_url(re.compile(r".*/backoffice/automations/[0-9a-f-]{36}/$"))
    saved = Rule.objects.get()
    assert saved.conditions[1] == {"field": "event.amount", "op": "gte", "value": 1_000_000}
    assert saved.actions[0]["params"]["subject"] == "Large deposit from Germany"
    page.goto(f"{base}/backoffice/automations/")
    assert page.get_by_role("link", name="Large German deposits").is_visible()
    snap(page, shots, "auto-02-rules")

    run = failed_run(platform)
    page.goto(f"{base}/backoffice/automations/exceptions/")
    snap(page, shots, "auto-03-exceptions")
    page.goto(f"{base}/backoffice/automations/runs/{run.id}/")
    snap(page, shots, "auto-04-run")
    assert "manager link down" in page.locator("[data-testid=results]").inner_text()
    page.get_by_label("What did you do instead?").fill("Opened the account by hand.")
    page.get_by_role("button", name="Mark handled").click()
    assert page.get_by_text("The run was marked handled.").is_visible()
