"""The IB portal's pages: dashboard totals and chart data, referral links with copy buttons,
the sub-IB tree, clients with drill-down to deals, payouts — and nothing outside the IB's own
subtree."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client as HttpClient

from brokerdesk.core import clock
from brokerdesk.partners import attribution
from brokerdesk.partners import services as partners
from brokerdesk.partners.consumers import on_deals_closed
from tests.partners.conftest import T0, deal_payload, make_ib, message, plan_for, verified_client
from tests.web.conftest import verified_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_passwords(settings: Any) -> None:
    """A cheap password hasher: these tests sign people up and in many times."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def programme() -> dict[str, Any]:
    """A master IB with a sub-IB; each has a client who traded one lot of EURUSD."""
    master_user, sub_user = verified_user(), verified_user()
    with clock.frozen(T0) as c:
        master = make_ib(user_id=master_user.pk, code="master")
        sub = make_ib(master, user_id=sub_user.pk, code="sub")
        plan_for(master, {**_rebate(), "overrides": [2000]}, code="plan-master")
        plan_for(sub, {**_rebate(), "overrides": [2000]}, code="plan-sub")
        partners.create_link(master.pk, by="system:test", code="master-link")
        partners.create_link(master.pk, by="system:test", kind="promo", code="MASTER5")
        mine, theirs = verified_client(), verified_client()
        attribution.request_reassignment(mine, master.pk, by="system:test", reason="setup")
        attribution.request_reassignment(theirs, sub.pk, by="system:test", reason="setup")
        c.advance(timedelta(hours=1))
        on_deals_closed(
            [
                message(deal_payload(mine, at=c.current, group="real\\std")),
                message(deal_payload(theirs, at=c.current, group="real\\std")),
            ]
        )
    return {
        "master": master,
        "sub": sub,
        "master_user": master_user,
        "sub_user": sub_user,
        "mine": mine,
        "theirs": theirs,
    }


def _rebate() -> dict[str, Any]:
    return {
        "symbol_groups": {"FX": ["EURUSD"]},
        "components": [{"type": "rebate", "rates": {"FX": 700}}],
    }


def as_user(user: Any) -> HttpClient:
    http = HttpClient()
    http.force_login(user)
    return http


def test_the_dashboard_shows_clients_volume_and_commission_with_chart_data():
    p = programme()
    http = as_user(p["master_user"])
    with clock.frozen(T0 + timedelta(days=1)):
        page = http.get("/partners/").content.decode()
    stats = " ".join(re.sub(r"<[^>]+>", " ", page.split('data-testid="ib-stats"')[1]).split())
    # $7 a lot: 80 % of its own client's deal and the 20 % override on the sub-IB's client
    assert "Clients 2 1 direct" in stats
    assert "Volume (lots) 2.00 2 deals" in stats  # its own level and the sub-IB's
    assert "Commissions earned 7.00 USD" in stats  # (whitespace normalised)
    chart = json.loads(page.split('id="ib-chart-data" type="application/json">')[1].split("<")[0])
    assert len(chart["labels"]) == 30 and chart["earned"]["USD"][-2] == "7.00"


def test_referral_links_and_codes_have_copy_buttons():
    p = programme()
    page = as_user(p["master_user"]).get("/partners/links/").content.decode()
    assert 'value="http://testserver/portal/join/master-link/"' in page
    assert 'value="MASTER5"' in page
    assert page.count("data-copy=") == 2
    assert 'for="link-1"' in page and 'id="link-1"' in page  # every field is labelled


def test_the_tree_lists_the_sub_ibs_under_their_parent():
    p = programme()
    with clock.frozen(T0 + timedelta(days=1)):
        page = as_user(p["master_user"]).get("/partners/tree/").content.decode()
        sub_page = as_user(p["sub_user"]).get("/partners/tree/").content.decode()
    body = page.split('data-testid="tree"')[1]
    assert body.index(">master<") < body.index(">sub<")
    assert ">master<" not in sub_page.split('data-testid="tree"')[1]  # a sub-IB sees only below


def test_clients_drill_down_to_deals_and_stop_at_the_subtree():
    p = programme()
    master, sub = as_user(p["master_user"]), as_user(p["sub_user"])
    with clock.frozen(T0 + timedelta(days=1)):
        listing = master.get("/partners/clients/").content.decode()
        drill = master.get(f"/partners/clients/{p['mine']}/").content.decode()
        sub_drill = master.get(f"/partners/clients/{p['theirs']}/").content.decode()
        refused = sub.get(f"/partners/clients/{p['mine']}/")
    assert f"/partners/clients/{p['mine']}/" in listing
    assert f"/partners/clients/{p['theirs']}/" in listing  # the sub-IB's client, marked so
    assert "Sub-IB" in listing
    deals = drill.split('data-testid="client-deals"')[1]
    assert "EURUSD" in deals and "5.60\xa0USD" in deals  # 700 less the 20 % override
    assert "1.40\xa0USD" in sub_drill.split('data-testid="client-deals"')[1]
    assert refused.status_code == 404


def test_a_corrected_deal_shows_only_what_it_earns_now():
    from brokerdesk.partners.consumers import on_deals_corrected
    from tests.partners.test_corrections import corrected, correction_message, state

    master_user = verified_user()
    with clock.frozen(T0) as c:
        master = make_ib(user_id=master_user.pk, code="master")
        plan_for(master, _rebate(), code="plan-master")
        client = verified_client()
        attribution.request_reassignment(client, master.pk, by="system:test", reason="setup")
        c.advance(timedelta(hours=1))
        deal = deal_payload(client, at=c.current, volume=10_000)
        on_deals_closed([message(deal)])
        c.advance(timedelta(hours=1))
        doubled = state(deal, volume=20_000)
        on_deals_corrected([correction_message(corrected(deal, 1, doubled))])
        drill = as_user(master_user).get(f"/partners/clients/{client}/").content.decode()
    deals = drill.split('data-testid="client-deals"')[1]
    assert "14.00\xa0USD" in deals  # two lots now
    assert "7.00\xa0USD" not in deals  # the cancelled original is not shown as earned


def test_payouts_show_payable_and_paid_commission():
    p = programme()
    from brokerdesk.partners.models import Accrual

    ids = list(Accrual.objects.filter(ib=p["master"]).values_list("pk", flat=True))
    finance = verified_user()
    from brokerdesk.staff.roles import Role, grant_role

    grant_role(finance, Role.FINANCE, Role.PARTNER_MANAGER)
    partners.transition(ids, "approved", by=finance, reason="ok")
    partners.transition(ids, "payable", by=finance, reason="ok")
    page = as_user(p["master_user"]).get("/partners/payouts/").content.decode()
    assert 'data-testid="ib-payable">7.00\xa0USD' in page
    partners.pay_ib(p["master"].pk, request_key="payout-1", by=finance)
    page = as_user(p["master_user"]).get("/partners/payouts/").content.decode()
    assert 'data-testid="ib-payable">0.00\xa0USD' in page
    assert "7.00\xa0USD" in page.split('data-testid="ib-payouts"')[1]


def test_someone_who_is_not_a_partner_is_refused():
    http = as_user(verified_user())
    for path in ("/partners/", "/partners/links/", "/partners/clients/", "/partners/payouts/"):
        assert http.get(path).status_code == 403, path
    assert HttpClient().get("/partners/")["Location"].startswith("/accounts/login/")


def test_the_demo_partner_is_seeded_once_with_the_demo_client():
    from brokerdesk.partnerportal import demo as partner_demo
    from brokerdesk.partners.queries import attributed_ib_code
    from brokerdesk.portal import demo as portal_demo

    portal_demo.seed()
    first = partner_demo.seed()
    again = partner_demo.seed()
    assert first.startswith("partner sign-in partner@example.com / ")
    assert again == "partner sign-in partner@example.com exists"
    from brokerdesk.clients.queries import search_clients

    (demo_client,) = search_clients("client@example.com", limit=1)
    assert attributed_ib_code(demo_client.id) == "demo-partner"
    http = HttpClient()
    assert http.login(username="demopartner", password="brokerdesk-demo")
    assert "Demo Partner" in http.get("/partners/").content.decode()


def test_payouts_show_what_is_held_back_until_it_is_released():
    user = verified_user()
    with clock.frozen(T0) as c:
        ib = make_ib(user_id=user.pk, code="holder")
        plan_for(ib, {**_rebate(), "holdback_bps": 2000, "holdback_days": 30}, code="plan-hold")
        client = verified_client()
        attribution.request_reassignment(client, ib.pk, by="system:test", reason="setup")
        c.advance(timedelta(hours=1))
        on_deals_closed([message(deal_payload(client, at=c.current, group="real\\std"))])
        states = as_user(user).get("/partners/payouts/").content.decode()
        states = states.split('data-testid="ib-states"')[1].split("</dl>")[0]
        assert '<dt>Accrued</dt><dd class="num">5.60\xa0USD' in states
        assert '<dt>Held back</dt><dd class="num">1.40\xa0USD' in states
        c.advance(timedelta(days=31))
        from brokerdesk.partners.accrual import release_holdbacks

        assert release_holdbacks() == 1
        states = as_user(user).get("/partners/payouts/").content.decode()
    states = states.split('data-testid="ib-states"')[1].split("</dl>")[0]
    assert "Held back" not in states
    assert '<dt>Accrued</dt><dd class="num">7.00\xa0USD' in states
