"""Dealer corrections (``trading.deal_corrected``) rebook the commission of a deal: once per
version, under the original plan version and hierarchy, unpaid accruals cancelled and rebooked,
paid ones compensated by a clawback the next payout nets."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brokerdesk.clients import services as clients
from brokerdesk.core import clock
from brokerdesk.core.bus.base import Message
from brokerdesk.core.errors import ValidationError
from brokerdesk.core.ids import new_id
from brokerdesk.core.models import AuditEntry, OutboxEvent
from brokerdesk.ledger import queries as ledger_queries
from brokerdesk.ledger import services as ledger
from brokerdesk.partners import accrual, attribution, corrections, queries
from brokerdesk.partners.consumers import on_deals_closed, on_deals_corrected
from brokerdesk.partners.models import (
    Accrual,
    ClientVolume,
    DealCorrection,
    DealRecord,
    IBDailyActivity,
    IBPeriodVolume,
)
from tests.clients.factories import user
from tests.partners.conftest import (
    REBATE,
    T0,
    chain,
    deal_payload,
    make_ib,
    message,
    plan_for,
    verified_client,
)

pytestmark = pytest.mark.django_db

OVERRIDES = {**REBATE, "overrides": [2000, 1000]}
DAY = timedelta(days=1)


def attach(client_id, ib):
    attribution.request_reassignment(client_id, ib.pk, by="system:test", reason="test setup")


def balance(ib, bucket="payable"):
    account = ledger.open_account("ib", str(ib.pk), "USD", bucket)
    return ledger_queries.balance(account.id).posted


def state(p: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """A deal's state as ``trading.deal_corrected`` carries it (``trading_deal`` columns)."""
    s = {
        "login": p["login"],
        "action": 0,
        "entry": 1,
        "reason": 0,
        "order": 0,
        "position_id": 77,
        "symbol": p["symbol"],
        "volume": p["volume"],
        "volume_ext": 0,
        "volume_closed": p["volume"],
        "volume_closed_ext": 0,
        "price": 108_000,
        "digits": 5,
        "contract_size": 100_000,
        "currency_digits": 2,
        "profit": p["profit"],
        "commission": p["commission"],
        "storage": p["swap"],
        "fee": 0,
        "comment": "",
        "external_id": "",
        "time_msc": int(datetime.fromisoformat(p["time"]).timestamp() * 1000),
    }
    if "volume" in kw:
        kw.setdefault("volume_closed", kw["volume"])
    s.update(kw)
    return s


def corrected(
    p: dict[str, Any],
    version: int,
    after: dict[str, Any] | None,
    before: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``trading.deal_corrected`` payload for the deal ``p`` (``after`` None: a delete)."""
    b = before or state(p)
    return {
        "server": p["server"],
        "login": p["login"],
        "deal": p["deal"],
        "change": "delete" if after is None else "update",
        "version_msc": version,
        "before": b,
        "after": after,
        "delta": {},
    }


def correction_message(payload: dict[str, Any]) -> Message:
    return Message(
        event_id=str(new_id()),
        stream="trading",
        type="trading.deal_corrected",
        payload=payload,
        occurred_at=T0.isoformat(),
    )


def live():
    return Accrual.objects.exclude(state="cancelled")


def owed(ib) -> int:
    return sum(a.amount for a in live().filter(ib=ib))


def setup_chain(rules_=OVERRIDES):
    master, sub, subsub = chain(3)
    plan_for(subsub, rules_)
    client = verified_client()
    attach(client, subsub)
    return master, sub, subsub, client


def test_an_update_that_raises_the_volume_before_payout_rebooks_every_level():
    with clock.frozen(T0) as c:
        master, sub, subsub, client = setup_chain()
        c.advance(timedelta(hours=1))
        p = deal_payload(client, at=c.current, volume=10_000)  # 1 lot: pool 700
        on_deals_closed([message(p)])
        originals = {a.level: a.amount for a in Accrual.objects.all()}
        c.advance(timedelta(hours=1))
        on_deals_corrected([correction_message(corrected(p, 1, state(p, volume=25_000)))])

    assert originals == {0: 490, 1: 140, 2: 70}
    assert (owed(subsub), owed(sub), owed(master)) == (1225, 350, 175)
    assert (balance(subsub), balance(sub), balance(master)) == (1225, 350, 175)
    assert set(Accrual.objects.filter(kind="deal").values_list("state", flat=True)) == {"cancelled"}
    booked = Accrual.objects.get(kind="correction", ib=subsub)
    assert booked.state == "accrued" and booked.deal_id == f"MT5-Live:{p['deal']}"
    assert booked.plan_version_id == Accrual.objects.get(kind="deal", ib=subsub).plan_version_id
    assert "update of deal" in booked.reason
    period = IBPeriodVolume.objects.get(ib=subsub)
    assert period.volume == 25_000
    assert ClientVolume.objects.get(client_id=client).volume == 25_000
    daily = IBDailyActivity.objects.get(ib=subsub, level=0)
    assert (daily.deals, daily.volume, daily.earned) == (1, 25_000, 1225)
    assert IBDailyActivity.objects.get(ib=master, level=2).earned == 175
    assert AuditEntry.objects.filter(action="partners.deal_corrected").count() == 1
    assert OutboxEvent.objects.filter(type="commission.corrected").count() == 1

    # the evidence: the original amounts (cancelled), the correction and what it booked
    ev = queries.evidence(subsub.pk, start=T0, end=T0 + DAY, client_id=client)
    [deal] = ev.deals
    assert sorted((o.kind, o.state, o.amount) for o in deal.outcomes) == [
        ("correction", "accrued", 1225),
        ("deal", "cancelled", 490),
    ]
    [fix] = deal.corrections
    assert (fix.version_msc, fix.change, fix.outcome) == (1, "update", "rebooked")
    assert fix.before["volume"] == 10_000 and fix.after and fix.after["volume"] == 25_000
    assert ev.total_amount == 1225
    comp = next(o for o in deal.outcomes if o.kind == "correction").computation
    assert comp["correction"]["version_msc"] == 1 and comp["previously"] == 490
    assert comp["pool"]["amount"] == 1750 and comp["target"] == 1225


def test_an_update_that_lowers_an_approved_payable_deal_keeps_its_state_and_pays_less():
    with clock.frozen(T0) as c:
        ib = make_ib()
        plan_for(ib)
        client = verified_client()
        attach(client, ib)
        c.advance(timedelta(hours=1))
        p = deal_payload(client, at=c.current, volume=20_000)
        on_deals_closed([message(p)])
        ids = list(Accrual.objects.values_list("pk", flat=True))
        accrual.approve(ids, by=user("partner_manager"))
        accrual.make_payable(ids, by="system:test")
        on_deals_corrected([correction_message(corrected(p, 5, state(p, volume=5_000)))])
        [booked] = Accrual.objects.filter(kind="correction")
        assert (booked.amount, booked.state) == (350, "payable")  # lower: no new approval
        payout = accrual.pay_ib(ib.pk, by=user("finance"), request_key="p1")

    assert payout.amount == 350
    assert balance(ib, "cash") == 350 and balance(ib) == 0


def test_a_delete_before_payout_cancels_everything_and_unwinds_the_counters():
    with clock.frozen(T0) as c:
        master, _sub, subsub, client = setup_chain()
        c.advance(timedelta(hours=1))
        p = deal_payload(client, at=c.current, volume=10_000)
        keep = deal_payload(client, at=c.current, volume=10_000)
        on_deals_closed([message(p), message(keep)])
        on_deals_corrected([correction_message(corrected(p, 7, None))])

    assert owed(subsub) == 490 and balance(subsub) == 490 and balance(master) == 70
    assert Accrual.objects.filter(kind="correction").count() == 0
    assert Accrual.objects.filter(state="cancelled", deal_id=f"MT5-Live:{p['deal']}").count() == 3
    assert IBPeriodVolume.objects.get(ib=subsub).volume == 10_000
    daily = IBDailyActivity.objects.get(ib=subsub, level=0)
    assert (daily.deals, daily.volume, daily.earned) == (1, 10_000, 490)
    row = DealCorrection.objects.get()
    assert row.change == "delete" and row.after is None and row.working["deleted"]


def test_a_delete_after_payout_is_a_clawback_the_ib_sees_and_the_next_payout_nets():
    finance = user("finance")
    with clock.frozen(T0) as c:
        ib = make_ib()
        plan_for(ib)
        client = verified_client()
        attach(client, ib)
        c.advance(timedelta(hours=1))
        p = deal_payload(client, at=c.current, volume=10_000)  # 700
        on_deals_closed([message(p)])
        ids = list(Accrual.objects.values_list("pk", flat=True))
        accrual.approve(ids, by=user("partner_manager"))
        accrual.make_payable(ids, by="system:test")
        accrual.pay_ib(ib.pk, by=finance, request_key="p1")
        c.advance(timedelta(days=2))
        on_deals_corrected([correction_message(corrected(p, 9, None))])

        [claw] = Accrual.objects.filter(kind="correction")
        assert (claw.amount, claw.state) == (-700, "payable")
        assert Accrual.objects.get(kind="deal").state == "paid"  # paid stays paid
        lines = queries.statement(ib.pk, viewer=ib.pk, start=T0, end=T0 + DAY)
        assert ("correction", -700) in [(x.kind, x.amount) for x in lines]
        assert "delete of deal" in next(x.reason for x in lines if x.kind == "correction")
        booked_later = queries.statement(ib.pk, viewer=ib.pk, start=c.current, end=c.current + DAY)
        assert [(x.kind, x.amount) for x in booked_later] == [("correction", -700)]
        assert balance(ib, "cash") == 700 and balance(ib) == -700
        # nothing else is payable: no payout, never a negative wallet
        with pytest.raises(ValidationError) as err:
            accrual.pay_ib(ib.pk, by=finance, request_key="p2")
        assert err.value.code == "nothing_payable"
        # a new deal of 2 lots: the next payout nets the clawback
        q = deal_payload(client, at=c.current, volume=20_000)
        on_deals_closed([message(q)])
        new = list(
            Accrual.objects.filter(kind="deal", state="accrued").values_list("pk", flat=True)
        )
        accrual.approve(new, by=user("partner_manager"))
        accrual.make_payable(new, by="system:test")
        payout = accrual.pay_ib(ib.pk, by=finance, request_key="p3")

    assert payout.amount == 1400 - 700
    assert balance(ib, "cash") == 1400 and balance(ib) == 0
    assert Accrual.objects.get(pk=claw.pk).state == "paid"
    ev = queries.evidence(ib.pk, start=T0, end=T0 + DAY, client_id=client)
    deleted = next(d for d in ev.deals if d.key == f"MT5-Live:{p['deal']}")
    assert sorted((o.kind, o.state, o.amount) for o in deleted.outcomes) == [
        ("correction", "paid", -700),
        ("deal", "paid", 700),
    ]
    assert deleted.corrections[0].change == "delete"


def test_a_duplicate_and_an_older_version_change_nothing():
    with clock.frozen(T0) as c:
        ib = make_ib()
        plan_for(ib)
        client = verified_client()
        attach(client, ib)
        c.advance(timedelta(hours=1))
        p = deal_payload(client, at=c.current, volume=10_000)
        on_deals_closed([message(p)])
        v2 = corrected(p, 200, state(p, volume=30_000))
        v1 = corrected(p, 100, state(p, volume=20_000))
        on_deals_corrected([correction_message(v2)])
        snapshot = list(Accrual.objects.order_by("pk").values_list("pk", "amount", "state"))
        on_deals_corrected([correction_message(v2), correction_message(v2)])  # redelivered
        report = corrections.apply_corrections([v1])  # older, delivered late

    assert report.duplicates == 1 and report.applied == 0
    assert list(Accrual.objects.order_by("pk").values_list("pk", "amount", "state")) == snapshot
    assert owed(ib) == 2100 and balance(ib) == 2100
    assert DealCorrection.objects.count() == 1
    assert IBPeriodVolume.objects.get(ib=ib).volume == 30_000


def test_two_corrections_in_turn_book_against_the_newest_state():
    with clock.frozen(T0) as c:
        ib = make_ib()
        plan_for(ib, {**REBATE, "holdback_bps": 2000, "holdback_days": 30})
        client = verified_client()
        attach(client, ib)
        c.advance(timedelta(hours=1))
        p = deal_payload(client, at=c.current, volume=10_000)
        on_deals_closed([message(p)])
        first = state(p, volume=30_000)
        on_deals_corrected([correction_message(corrected(p, 1, first))])
        on_deals_corrected([correction_message(corrected(p, 2, state(p, volume=20_000), first))])

    parts = {part: sum(a.amount for a in live().filter(part=part)) for part in ("main", "holdback")}
    assert parts == {"main": 1120, "holdback": 280}
    held = live().get(part="holdback")
    assert held.release_at == DealRecord.objects.get().closed_at + timedelta(days=30)
    assert IBPeriodVolume.objects.get(ib=ib).volume == 20_000 and balance(ib) == 1400


def test_a_correction_that_overtakes_its_deal_closed_accrues_the_corrected_deal_once():
    with clock.frozen(T0) as c:
        ib = make_ib()
        plan_for(ib)
        client = verified_client()
        attach(client, ib)
        p = deal_payload(None, at=T0 + timedelta(hours=1), volume=10_000)
        p.pop("client_id")
        clients.link_platform_login(
            client,
            platform="mt5",
            server=p["server"],
            login=p["login"],
            currency="USD",
            is_live=True,
            by="system:test",
        )
        c.advance(timedelta(hours=2))
        gone = deal_payload(None, at=T0 + timedelta(hours=1), volume=10_000, login=p["login"])
        corrections.apply_corrections(
            [corrected(p, 3, state(p, volume=40_000)), corrected(gone, 4, None)]
        )
        on_deals_closed([message(p), message(gone)])  # the late deal_closed: old figures

    assert owed(ib) == 2800  # 4 lots, once
    assert DealRecord.objects.get(pk=f"MT5-Live:{p['deal']}").volume == 40_000
    assert live().filter(deal_id=f"MT5-Live:{gone['deal']}").count() == 0
    ev = queries.evidence(ib.pk, start=T0, end=T0 + DAY, client_id=client)
    tomb = next(d for d in ev.deals if d.key == f"MT5-Live:{gone['deal']}")
    assert tomb.outcomes[0].excluded_by == "deal_deleted" and tomb.corrections


def test_an_excluded_deal_that_now_qualifies_is_accrued_and_a_cpa_paid_is_flagged():
    rules_ = {
        **REBATE,
        "filters": {"min_volume": 20_000},
        "components": [
            {"type": "rebate", "rates": {"FX": 700}},
            {"type": "cpa", "amount": 10_000, "mode": "volume", "min_volume": 20_000},
        ],
    }
    with clock.frozen(T0) as c:
        ib = make_ib()
        plan_for(ib, rules_)
        client = verified_client()
        attach(client, ib)
        c.advance(timedelta(hours=1))
        small = deal_payload(client, at=c.current, volume=10_000)  # below min_volume
        on_deals_closed([message(small)])
        assert not Accrual.objects.exists()
        on_deals_corrected([correction_message(corrected(small, 1, state(small, volume=20_000)))])
        assert owed(ib) == 1400 + 10_000  # the deal, and the CPA it now qualifies for
        on_deals_corrected([correction_message(corrected(small, 2, None))])

    assert owed(ib) == 10_000  # the CPA stays ...
    [flag] = queries.corrections_to_review()
    assert "CPA already accrued" in flag.review  # ... flagged for staff


def test_balance_deal_corrections_are_ignored_and_bad_payloads_refused():
    p = deal_payload(None, at=T0)
    balance_op = state(p, action=2, entry=0)
    report = corrections.apply_corrections(
        [corrected(p, 1, {**balance_op, "profit": 5}, balance_op)]
    )
    assert report.ignored == 1 and not DealCorrection.objects.exists()
    with pytest.raises(ValidationError):
        corrections.apply_corrections([{"server": "x", "deal": 1, "change": "rewrite"}])


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    volumes=st.lists(st.one_of(st.none(), st.integers(0, 300_000)), min_size=1, max_size=4),
    pay_first=st.booleans(),
)
def test_after_any_corrections_a_deal_owes_what_its_final_figures_pay(volumes, pay_first):
    """Whatever the sequence (raise, lower, delete; paid or not), the live accruals of each
    level add up to what a deal with the final figures pays, and never exceed its pool."""
    with clock.frozen(T0) as c:
        master, sub = chain(2)
        plan_for(
            sub,
            {**REBATE, "overrides": [2500], "holdback_bps": 1000},
            code=f"corr-{uuid4().hex[:12]}",
        )
        client = verified_client()
        attach(client, sub)
        c.advance(timedelta(hours=1))
        p = deal_payload(client, at=c.current, volume=10_000)
        on_deals_closed([message(p)])
        if pay_first:
            key = f"MT5-Live:{p['deal']}"
            ids = list(
                Accrual.objects.filter(part="main", deal_id=key).values_list("pk", flat=True)
            )
            accrual.approve(ids, by=user("partner_manager"))
            accrual.make_payable(ids, by="system:test")
            for ib in (master, sub):
                accrual.pay_ib(ib.pk, by=user("finance"), request_key=f"pay-{ib.pk}")
        current = state(p)
        final = 10_000
        sent = []
        for i, v in enumerate(volumes, start=1):
            after = None if v is None else state(p, volume=v)
            sent.append(corrected(p, i, after, current))
            corrections.apply_corrections([sent[-1]])
            if after is None:
                final = 0
                break
            current, final = after, v
        booked = list(Accrual.objects.order_by("pk").values_list("pk", "amount", "state"))
        report = corrections.apply_corrections(list(reversed(sent)))  # redelivered, any order
        assert report.applied == 0
        assert list(Accrual.objects.order_by("pk").values_list("pk", "amount", "state")) == booked

    pool = final * 700 // 10_000
    key = f"MT5-Live:{p['deal']}"
    rows = live().filter(deal_id=key)
    per_level = {
        lv: sum(a.amount for a in rows if a.level == lv and a.ib_id == ib.pk)
        for lv, ib in ((0, sub), (1, master))
    }
    expected_sub = (final * 700 * 7500) // (10_000 * 10_000)
    expected_master = (final * 700 * 2500) // (10_000 * 10_000)
    assert per_level == {0: expected_sub, 1: expected_master}
    assert sum(per_level.values()) <= pool
    for ib, expected in ((sub, expected_sub), (master, expected_master)):
        assert balance(ib) + balance(ib, "cash") == expected


def test_corrections_have_their_own_consumer_off_the_accrual_path():
    from brokerdesk.core.consumers import registered

    spec = registered()["partners.correct_deals"]
    assert spec.streams == ("trading",) and spec.keyed_writes
    p = deal_payload(None, at=T0)
    on_deals_corrected([message(p)])  # a deal_closed: not for this consumer
    on_deals_closed([correction_message(corrected(p, 1, None))])  # nor the reverse
    assert not DealRecord.objects.exists() and not DealCorrection.objects.exists()


def test_a_deal_that_becomes_a_closing_trade_is_accrued_and_shown_once_on_the_dashboard():
    with clock.frozen(T0) as c:
        ib = make_ib()
        plan_for(ib)
        client = verified_client()
        attach(client, ib)
        c.advance(timedelta(hours=1))
        p = deal_payload(None, at=c.current, volume=10_000)
        clients.link_platform_login(
            client,
            platform="mt5",
            server=p["server"],
            login=p["login"],
            currency="USD",
            is_live=True,
            by="system:test",
        )
        opening = state(p, entry=0)
        out = state(p, entry=1)
        # an opening deal turned into a closing one: no deal_closed ever comes for it
        corrections.apply_corrections([corrected(p, 1, out, opening)])
        # a closing deal that stops being one before its deal_closed is processed
        q = deal_payload(None, at=c.current, volume=10_000, login=p["login"])
        corrections.apply_corrections([corrected(q, 2, state(q, entry=0))])
        on_deals_closed([message(q)])
        corrections.apply_corrections([corrected(q, 3, state(q, volume=20_000), state(q, entry=0))])

    assert owed(ib) == 700 + 1400
    daily = IBDailyActivity.objects.get(ib=ib, level=0)
    assert (daily.deals, daily.volume, daily.earned) == (2, 30_000, 2100)
    assert IBPeriodVolume.objects.get(ib=ib).volume == 30_000


def test_the_trading_event_payload_is_understood():
    from brokerdesk.trading.events import DealCorrected

    with clock.frozen(T0) as c:
        ib = make_ib()
        plan_for(ib)
        client = verified_client()
        attach(client, ib)
        c.advance(timedelta(hours=1))
        p = deal_payload(client, at=c.current, volume=10_000)
        on_deals_closed([message(p)])
        event = DealCorrected(
            server=p["server"],
            login=p["login"],
            deal=p["deal"],
            change="update",
            version_msc=1_700_000_000_000,
            before=state(p),
            after=state(p, volume=30_000),
            delta={"volume": 20_000},
        )
        on_deals_corrected([correction_message(event.payload())])

    assert owed(ib) == 2100
