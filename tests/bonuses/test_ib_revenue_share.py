"""IB revenue share is net of bonuses: the bonus money a deal released is its bonus cost."""

from __future__ import annotations

import pytest

from brokerdesk.bonuses import services
from brokerdesk.partners import accrual as partners_accrual
from brokerdesk.partners import attribution
from brokerdesk.partners.models import Accrual
from tests.bonuses.conftest import FINANCE, bucket, campaign, client, consume, deal_message
from tests.partners.conftest import make_ib, plan_for

pytestmark = pytest.mark.django_db
REVENUE_SHARE = {"components": [{"type": "revenue_share", "share_bps": 5_000}]}


@pytest.mark.parametrize("bonuses_first", [True, False])
def test_revenue_share_subtracts_the_bonus_a_deal_unlocked_in_either_order(bonuses_first):
    ib = make_ib()
    plan_for(ib, REVENUE_SHARE)
    alice, bob = client(), client()
    for c in (alice, bob):
        attribution.request_reassignment(c, ib.pk, by="system:test", reason="setup")
    c = campaign(trigger="manual", fixed_amount=10_000, unlock_per_lot=1_000)
    services.grant_manual(
        campaign_id=c.id, client_id=alice, amount=10_000, reason="x", by=FINANCE, request_key="ib"
    )
    with_bonus = deal_message(alice, lots=2, profit=-10_000, login=7101)  # unlocks 2,000
    without = deal_message(bob, lots=2, profit=-10_000, login=7102)

    order = ["bonuses.trading", "partners.accrue_deals"]
    for name in order if bonuses_first else reversed(order):  # the worker runs both at once
        consume(name, [with_bonus, without])

    by_deal = {a.source_key: a for a in Accrual.objects.all()}
    plain = by_deal[f"sim:{without.payload['deal']}"]
    net = by_deal[f"sim:{with_bonus.payload['deal']}"]
    assert plain.amount == 5_000  # half of the client's 100.00 loss
    assert net.amount == 4_000  # half of (100.00 minus the 20.00 bonus the deal unlocked)
    # partners may derive a deal accrual's computation instead of storing it (``working``)
    explain = getattr(partners_accrual, "working", lambda a: a.computation)
    part = next(p for p in explain(net)["pool"]["parts"] if p["type"] == "revenue_share")
    assert part["bonus_cost"] == 2_000
    assert bucket(alice, "cash") == 2_000  # unlocked once, whoever saw the deal first
