"""Notification pages and API: a person sees and changes only their own messages and settings."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from brokerdesk.notifications import services
from brokerdesk.notifications.models import Notification, Preference
from tests.clients.factories import user
from tests.notifications.conftest import ib_with_login, person

pytestmark = pytest.mark.django_db


def signed_in(account: Any) -> Client:
    web = Client()
    web.force_login(account)
    return web


def message(who: Any, key: str, amount: int = 100, **target: Any) -> Notification:
    target = target or {"client_id": who.pk}
    services.notify(
        kind="bonus_granted",
        context={"amount": amount, "currency": "USD"},
        idempotency_key=key,
        **target,
    )
    return Notification.objects.get(idempotency_key=f"{key}:in_app")


def test_the_inbox_shows_only_my_messages_unread_first():
    me, other = person(), person()
    read = message(me, "a", 100)
    unread = message(me, "b", 200)
    message(other, "c", 999_999)
    services.mark_read(read.id, user_id=me.user.pk)

    html = signed_in(me.user).get("/portal/notifications/").content.decode()

    assert html.index(unread.subject) < html.index(read.subject)
    assert "9,999.99" not in html
    assert "1 unread message" in html


def test_marking_read_by_htmx_returns_the_item_and_another_persons_message_is_not_found():
    me, other = person(), person()
    mine, theirs = message(me, "a"), message(other, "b")
    web = signed_in(me.user)

    response = web.post(f"/portal/notifications/{mine.id}/read/", headers={"HX-Request": "true"})
    assert response.status_code == 200 and 'data-read="1"' in response.content.decode()
    assert web.post(f"/portal/notifications/{theirs.id}/read/").status_code == 404
    assert Notification.objects.get(pk=theirs.id).read_at is None
    assert web.post("/portal/notifications/read-all/").status_code == 302


def test_the_preferences_page_saves_language_and_channels():
    me = person()
    web = signed_in(me.user)
    page = web.get("/portal/notifications/preferences/").content.decode()
    assert 'name="email-deposit_received"' in page and "commission_paid" not in page

    web.post(
        "/portal/notifications/preferences/",
        {"language": "fr", "in_app-deposit_received": "on", "email-bonus_granted": "on"},
    )

    pref = Preference.objects.get(user_id=me.user.pk)
    assert pref.language == "fr"
    assert pref.channels["deposit_received"] == {"email": False, "in_app": True}
    assert pref.channels["bonus_granted"] == {"email": True, "in_app": False}
    bad = web.post("/portal/notifications/preferences/", {"language": "klingon"})
    assert bad.status_code == 400 and Preference.objects.get(user_id=me.user.pk).language == "fr"


def test_partners_have_their_own_inbox_and_clients_cannot_open_it():
    _ib, partner = ib_with_login()
    services.notify(
        user_id=partner.pk,
        kind="commission_paid",
        context={"amount": 5_000, "currency": "USD", "accruals": 2},
        idempotency_key="paid-1",
    )
    web = signed_in(partner)
    assert "50.00" in web.get("/partners/notifications/").content.decode()
    prefs = web.get("/partners/notifications/preferences/").content.decode()
    assert 'name="email-commission_paid"' in prefs and "deposit_received" not in prefs
    assert signed_in(person().user).get("/partners/notifications/").status_code == 403
    assert Client().get("/portal/notifications/").status_code == 302
    staff = signed_in(user("support"))
    assert staff.get("/portal/notifications/").status_code == 302  # to the back office


def test_the_api_gives_me_my_messages_and_my_preferences_only():
    me, other = person(), person()
    mine, theirs = message(me, "a"), message(other, "b")
    web = signed_in(me.user)

    assert [n["id"] for n in web.get("/api/v1/notifications/").json()] == [str(mine.id)]
    assert web.post(f"/api/v1/notifications/{theirs.id}/read").status_code == 404
    assert web.post(f"/api/v1/notifications/{mine.id}/read").status_code == 204
    assert web.get("/api/v1/notifications/").json()[0]["read"] is True
    saved = web.put(
        "/api/v1/notifications/preferences",
        json.dumps({"language": "de", "channels": {"bonus_granted": {"email": False}}}),
        "application/json",
    ).json()
    assert saved["language"] == "de"
    assert saved["channels"]["bonus_granted"] == {"email": False, "in_app": True}
    assert Client().get("/api/v1/notifications/").status_code == 401
