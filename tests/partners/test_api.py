"""The partners API: the IB portal sees its own subtree; staff endpoints need their role."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client

from brokerdesk.core import clock
from brokerdesk.partners import attribution
from brokerdesk.partners.consumers import on_deals_closed
from tests.clients.factories import user
from tests.partners.conftest import T0, deal_payload, make_ib, message, plan_for, verified_client

pytestmark = pytest.mark.django_db


def test_the_portal_shows_the_ib_its_earnings_and_hides_other_ibs():
    ib_user, other_user = user(), user()
    with clock.frozen(T0) as c:
        ib = make_ib(user_id=ib_user.pk)
        stranger = make_ib(user_id=other_user.pk)
        plan_for(ib)
        client = verified_client()
        attribution.request_reassignment(client, ib.pk, by="system:test", reason="setup")
        c.advance(timedelta(hours=1))
        on_deals_closed([message(deal_payload(client, at=c.current))])
    http = Client()
    http.force_login(ib_user)
    span = {"start": T0.isoformat(), "end": (T0 + timedelta(days=1)).isoformat()}

    mine = http.get("/api/v1/partners/me/earnings", span)
    theirs = http.get("/api/v1/partners/me/earnings", {**span, "ib_id": str(stranger.pk)})
    evidence = http.get("/api/v1/partners/me/evidence", span)

    assert mine.status_code == 200 and mine.json()[0]["amount"] == 700
    assert theirs.status_code == 404
    assert evidence.json()["deals"][0]["outcomes"][0]["amount"] == 700


def test_staff_commands_need_the_partner_manager_role():
    http = Client()
    http.force_login(user("support"))
    assert (
        http.post(
            "/api/v1/partners/ibs", {"code": "x", "name": "X"}, content_type="application/json"
        ).status_code
        == 403
    )
    http.force_login(user("partner_manager"))
    made = http.post(
        "/api/v1/partners/ibs", {"code": "alpha", "name": "Alpha"}, content_type="application/json"
    )
    assert made.status_code == 201 and made.json()["depth"] == 0


def test_a_referral_click_returns_a_signed_token():
    ib = make_ib()
    link = attribution.create_link(ib.pk, by="system:test", code="alpha-link")
    token = Client().get(f"/api/v1/partners/r/{link.code}").json()["token"]
    assert attribution.resolve_token(token).link.pk == link.pk
    assert Client().get("/api/v1/partners/r/nope").status_code == 404
