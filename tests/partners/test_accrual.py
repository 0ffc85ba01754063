"""The accrual engine end to end: deals in, accruals and ledger postings out, once."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brokerdesk.core import clock
from brokerdesk.core.errors import IllegalTransition, NotFound, PermissionDenied, ValidationError
from brokerdesk.core.models import AuditEntry, OutboxEvent
from brokerdesk.ledger import queries as ledger_queries
from brokerdesk.ledger import services as ledger
from brokerdesk.partners import accrual, attribution, plans, queries
from brokerdesk.partners.consumers import on_deals_closed, parse_batch
from brokerdesk.partners.models import IB, Accrual, DealRecord, Exclusion, IBDailyActivity
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


def attach(client_id, ib):
    attribution.request_reassignment(client_id, ib.pk, by="system:test", reason="test setup")


def payable(ib):
    account = ledger.open_account("ib", str(ib.pk), "USD", "payable")
    return ledger_queries.balance(account.id).posted


def test_a_deal_pays_the_direct_ib_and_its_uplines_once_and_posts_to_the_ledger():
    with clock.frozen(T0) as c:
        master, sub, subsub = chain(3)
        plan_for(subsub, OVERRIDES)
        client = verified_client()
        attach(client, subsub)
        c.advance(timedelta(hours=1))
        payload = deal_payload(client, at=c.current, volume=25_000)  # 2.5 lots EURUSD, 7.00/lot

        on_deals_closed([message(payload)])
        on_deals_closed([message(payload), message(payload)])  # redelivered, new event ids

    rows = {a.level: a for a in Accrual.objects.all()}
    pool = 25_000 * 700 // 10_000  # 1750
    assert {k: (a.ib_id, a.amount) for k, a in rows.items()} == {
        0: (subsub.pk, pool * 7000 // 10_000),
        1: (sub.pk, pool * 2000 // 10_000),
        2: (master.pk, pool * 1000 // 10_000),
    }
    assert sum(a.amount for a in rows.values()) <= pool
    assert DealRecord.objects.count() == 1
    assert payable(subsub) == 1225 and payable(sub) == 350 and payable(master) == 175
    expense = ledger.system_account("ib_commission_expense", "USD")
    assert ledger_queries.balance(expense.id).posted == -1750
    assert rows[0].deal_id == f"MT5-Live:{payload['deal']}" and rows[0].plan_version_id
    assert accrual.working(rows[0])["pool"]["amount"] == 1750
    assert rows[0].computation == {}  # derived from the deal and rule version, not stored
    [batch] = OutboxEvent.objects.filter(type="commissions.accrued")  # one event per batch
    assert batch.payload["accruals"] == 3 and batch.payload["amounts"] == {"USD": 1750}
    assert {a.accrual_id for a in queries.batch_accruals(batch.payload)} == {
        a.pk for a in rows.values()
    }
    today = IBDailyActivity.objects.get(ib=subsub, level=0)
    assert (today.deals, today.volume, today.earned) == (1, 25_000, 1225)
    assert IBDailyActivity.objects.get(ib=master, level=2).earned == 175


def test_a_new_plan_version_applies_only_to_deals_closed_after_it():
    with clock.frozen(T0) as c:
        ib = make_ib()
        v1 = plan_for(ib)
        client = verified_client()
        attach(client, ib)
        c.advance(timedelta(days=1))
        early = deal_payload(client, at=c.current)
        c.advance(timedelta(days=1))
        with pytest.raises(ValidationError) as err:
            plans.publish_version(
                v1.plan_id,
                REBATE,
                by="system:test",
                reason="x",
                valid_from=c.current - timedelta(hours=1),
            )
        assert err.value.code == "backdated"
        richer = {**REBATE, "components": [{"type": "rebate", "rates": {"FX": 900, "*": 100}}]}
        v2 = plans.publish_version(v1.plan_id, richer, by="system:test", reason="Q2 rates")
        c.advance(timedelta(hours=1))
        late = deal_payload(client, at=c.current)
        # the early deal arrives late, in the same batch as the new one
        on_deals_closed([message(late), message(early)])

    by_deal = {a.deal_id: a for a in Accrual.objects.all()}
    assert by_deal[f"MT5-Live:{early['deal']}"].plan_version_id == v1.pk
    assert by_deal[f"MT5-Live:{early['deal']}"].amount == 700
    assert by_deal[f"MT5-Live:{late['deal']}"].plan_version_id == v2.pk
    assert by_deal[f"MT5-Live:{late['deal']}"].amount == 900


def test_excluded_deals_are_stored_with_the_rule_and_show_in_the_evidence():
    rules_ = {**REBATE, "filters": {"min_holding_seconds": 60, "symbols_exclude": ["BTC*"]}}
    with clock.frozen(T0) as c:
        ib = make_ib()
        plan_for(ib, rules_)
        verified, unverified = verified_client(), verified_client()
        from brokerdesk.compliance import services as compliance

        compliance.restrict_client(unverified, by="system:test", reason="test")
        attach(verified, ib)
        attach(unverified, ib)
        c.advance(timedelta(hours=2))
        now = c.current
        deals = [
            deal_payload(
                verified, at=now, position_opened_at=(now - timedelta(seconds=5)).isoformat()
            ),
            deal_payload(verified, at=now, symbol="BTCUSD"),
            deal_payload(unverified, at=now),
            deal_payload(verified, at=now, volume=500_000),  # 50 lots, paid
        ]
        on_deals_closed([message(d) for d in deals])

    rules_hit = set(Exclusion.objects.values_list("rule", flat=True))
    assert rules_hit == {"min_holding_time", "symbol_excluded", "kyc_state"}
    ev = queries.evidence(ib.pk, start=T0, end=T0 + timedelta(days=1), client_id=verified)
    assert len(ev.deals) == 3 and ev.total_amount == 50 * 700
    why = {d.symbol + str(d.volume): d.outcomes[0] for d in ev.deals}
    assert why["EURUSD10000"].excluded_by == "min_holding_time"
    assert why["EURUSD500000"].amount == 35_000 and why["EURUSD500000"].version == 1
    assert why["EURUSD500000"].computation["pool"]["parts"][0]["per_lot"] == 700
    assert (
        queries.exclusion_rules(ib.pk, viewer=ib.pk, start=T0, end=T0 + timedelta(days=1))[
            "kyc_state"
        ]
        == 1
    )


def test_accruals_move_through_the_states_and_are_paid_to_the_ib_wallet():
    with clock.frozen(T0) as c:
        ib = make_ib()
        plan_for(ib, {**REBATE, "holdback_bps": 2000, "holdback_days": 30})
        client = verified_client()
        attach(client, ib)
        c.advance(timedelta(hours=1))
        on_deals_closed([message(deal_payload(client, at=c.current, volume=100_000))])
        closed_at = c.current
        main = Accrual.objects.get()  # one row per share: the holdback rides on it
        assert (main.part, main.amount, main.held) == ("main", 5600, 1400)
        assert main.release_at == closed_at + timedelta(days=30)
        assert queries.earned_by_state(ib.pk) == {("accrued", "USD"): 5600, ("held", "USD"): 1400}
        with pytest.raises(IllegalTransition):
            accrual.make_payable([main.pk], by="system:test")  # not approved yet
        accrual.approve([main.pk], by=user("partner_manager"))
        accrual.make_payable([main.pk], by="system:test")  # the main part need not wait
        finance = user("finance")
        payout = accrual.pay_ib(ib.pk, by=finance, request_key="payout-1")
        again = accrual.pay_ib(ib.pk, by=finance, request_key="payout-1")
        assert accrual.release_holdbacks() == 0  # not yet
        batch = OutboxEvent.objects.get(type="commissions.accrued").payload
        totals = queries.batch_totals(batch)
        assert [(t.amount, t.accruals) for t in totals] == [(7000, 1)]
        c.advance(timedelta(days=31))
        assert accrual.release_holdbacks() == 1
        assert queries.batch_totals(batch) == totals  # a rebuild reads the same figures
        assert accrual.release_holdbacks() == 0  # moved once
        held = Accrual.objects.get(part="holdback")
        assert (held.amount, held.held, held.state, held.source_key, held.level) == (
            1400,
            0,
            "accrued",
            main.source_key,
            0,
        )
        assert held.ledger_transfer_id == main.ledger_transfer_id
        accrual.approve([held.pk], by=user("partner_manager"))
        accrual.make_payable([held.pk], by="system:test")

    assert again.pk == payout.pk and payout.amount == 5600
    wallet = ledger.open_account("ib", str(ib.pk), "USD", "cash")
    assert ledger_queries.balance(wallet.id).posted == 5600
    assert payable(ib) == 1400
    main.refresh_from_db()
    assert (main.state, main.held) == ("paid", 0)
    assert queries.earned_by_state(ib.pk) == {("paid", "USD"): 5600, ("payable", "USD"): 1400}
    assert OutboxEvent.objects.filter(type="commission.paid").count() == 1
    with pytest.raises(IllegalTransition):
        accrual.approve([main.pk], by="system:test")


def test_a_holdback_moved_early_still_waits_and_a_cancelled_share_returns_its_holdback():
    with clock.frozen(T0) as c:
        ib = make_ib()
        plan_for(ib, {**REBATE, "holdback_bps": 2000, "holdback_days": 30})
        client = verified_client()
        attach(client, ib)
        c.advance(timedelta(hours=1))
        on_deals_closed(
            [
                message(deal_payload(client, at=c.current, volume=100_000)),
                message(deal_payload(client, at=c.current, volume=100_000)),
            ]
        )
        first, second = Accrual.objects.order_by("source_key")
        assert payable(ib) == 2 * 7000
        with transaction.atomic():
            (moved,) = accrual.split_held([first], now=c.current)  # as a correction does
        accrual.approve([moved.pk], by=user("partner_manager"))
        with pytest.raises(IllegalTransition) as err:
            accrual.make_payable([moved.pk], by="system:test")
        assert err.value.code == "holdback_not_released"
        accrual.cancel([second.pk], by=user("partner_manager"), reason="abusive trading")
        assert payable(ib) == 7000  # the whole share came back: 5600 + 1400 held
        c.advance(timedelta(days=31))
        assert accrual.release_holdbacks() == 0  # a cancelled share releases nothing
        accrual.make_payable([moved.pk], by="system:test")
    assert queries.earned_by_state(ib.pk) == {
        ("accrued", "USD"): 5600,
        ("payable", "USD"): 1400,
        ("cancelled", "USD"): 5600,
    }


def test_a_manual_adjustment_is_a_reasoned_compensating_entry_the_ib_sees():
    with clock.frozen(T0):
        ib = make_ib()
        with pytest.raises(ValidationError):
            accrual.adjust(ib.pk, 500, by="system:test", reason=" ", request_key="a0")
        adj = accrual.adjust(
            ib.pk,
            -300,
            by=user("partner_manager"),
            reason="clawback: abusive trading on 2 Mar",
            request_key="a1",
        )
        accrual.adjust(ib.pk, -300, by="system:test", reason="dup", request_key="a1")
        lines = queries.statement(ib.pk, viewer=ib.pk, start=T0, end=T0 + timedelta(days=1))

    assert payable(ib) == -300
    assert [(x.kind, x.amount, x.reason) for x in lines] == [
        ("adjustment", -300, "clawback: abusive trading on 2 Mar")
    ]
    assert AuditEntry.objects.filter(action="partners.adjustment").count() == 1
    assert adj.ledger_transfer_id is not None


def test_cpa_is_paid_once_when_the_deposit_and_volume_qualify():
    cpa_plan = {
        **REBATE,
        "components": [
            {
                "type": "cpa",
                "amount": 20_000,
                "mode": "deposit_and_volume",
                "min_first_deposit": 10_000,
                "min_volume": 20_000,
            }
        ],
    }
    with clock.frozen(T0) as c:
        ib = make_ib()
        plan_for(ib, cpa_plan)
        client = verified_client()
        attach(client, ib)
        attribution.record_funding(
            client, amount=25_000, currency="USD", reference="d1", at=c.current
        )
        c.advance(timedelta(hours=1))
        on_deals_closed([message(deal_payload(client, at=c.current, volume=10_000))])
        assert not queries.cpa_paid(client)
        on_deals_closed([message(deal_payload(client, at=c.current, volume=10_000))])
        on_deals_closed([message(deal_payload(client, at=c.current, volume=10_000))])

    cpa = Accrual.objects.get(kind="cpa")
    assert cpa.amount == 20_000 and cpa.source_key == f"cpa:{client}"


def test_an_ib_sees_only_its_own_subtree():
    with clock.frozen(T0) as c:
        master, sub = chain(2)
        sibling = make_ib()
        plan_for(sub, OVERRIDES)
        client = verified_client()
        attach(client, sub)
        c.advance(timedelta(hours=1))
        on_deals_closed([message(deal_payload(client, at=c.current))])
        day = c.current.date()

    tree = queries.sub_ib_tree(master.pk, viewer=master.pk, start=day, end=day)
    assert [(r.ib_id, r.depth, r.volume) for r in tree] == [(master.pk, 0, 0), (sub.pk, 1, 10_000)]
    rows = queries.clients(
        master.pk, viewer=master.pk, start=T0, end=T0 + timedelta(days=1), include_subtree=True
    )
    assert [(r.client_id, r.volume) for r in rows] == [(client, 10_000)]
    assert not hasattr(rows[0], "email")
    by_level = queries.earnings(master.pk, viewer=master.pk, start=T0, end=T0 + timedelta(days=1))
    assert [(r.key, r.amount) for r in by_level] == [("1", 140)]
    assert queries.today  # dashboard entry point exists
    for forbidden in (master.pk, sibling.pk):
        with pytest.raises(NotFound):
            queries.earnings(forbidden, viewer=sub.pk, start=T0, end=T0 + timedelta(days=1))
    with pytest.raises(NotFound):
        queries.evidence(sub.pk, viewer=sibling.pk, start=T0, end=T0 + timedelta(days=1))


def test_other_events_are_ignored_and_an_unusable_payload_is_refused_for_dead_lettering():
    good = deal_payload(None, at=T0)
    bad = {"login": 1}
    other = message(good)
    other = other.__class__(**{**other.__dict__, "type": "trading.account_opened"})

    assert [d.key for d in parse_batch([message(good), other])] == [f"MT5-Live:{good['deal']}"]
    assert len(parse_batch([message(good), message(bad)], strict=False)) == 1
    with pytest.raises(ValidationError) as err:
        on_deals_closed([message(good), message(bad)])
    assert err.value.field == "server"
    assert DealRecord.objects.count() == 0


_setup: dict[str, object] = {}


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    volumes=st.lists(st.integers(1, 2_000_000), min_size=1, max_size=12),
    symbols=st.lists(
        st.sampled_from(["EURUSD", "XAUUSD", "USDJPY", "BTCUSD"]), min_size=12, max_size=12
    ),
    seed=st.integers(0, 1000),
)
def test_rerunning_accrual_in_any_batching_adds_nothing(volumes, symbols, seed):
    if "ib" not in _setup or not IB.objects.filter(pk=_setup["ib"].pk).exists():
        with clock.frozen(T0):
            _master, sub = chain(2)
            plan_for(
                sub,
                {
                    **OVERRIDES,
                    "tiers": [
                        {"min_volume": 0, "multiplier_bps": 10_000},
                        {"min_volume": 3_000_000, "multiplier_bps": 12_000},
                    ],
                },
            )
            client = verified_client()
            attach(client, sub)
        _setup.update(ib=sub, client=client)
    client = _setup["client"]
    at = T0 + timedelta(hours=1)
    payloads = [
        deal_payload(client, at=at, volume=v, symbol=symbols[i]) for i, v in enumerate(volumes)
    ]
    accrual.accrue_deals([d for p in payloads for d in parse_batch([message(p)])])
    before = (
        Accrual.objects.count(),
        Exclusion.objects.count(),
        list(IBDailyActivity.objects.order_by("pk").values_list("deals", "earned")),
    )
    shuffled = payloads[:]
    random.Random(seed).shuffle(shuffled)
    cut = seed % len(shuffled)
    for part in (shuffled[:cut], shuffled[cut:]):
        on_deals_closed([message(p) for p in part])
    after = (
        Accrual.objects.count(),
        Exclusion.objects.count(),
        list(IBDailyActivity.objects.order_by("pk").values_list("deals", "earned")),
    )
    assert after == before
    for p in payloads:  # and no level ever takes more than the deal's pool
        rows = Accrual.objects.filter(deal_id=f"MT5-Live:{p['deal']}")
        pool = max((accrual.working(a)["pool"]["amount"] for a in rows), default=0)
        assert sum(a.amount for a in rows) <= pool
        for a in rows:  # the derived working is the computation that was paid
            share = sum(b.amount for b in rows if b.level == a.level)
            assert accrual.working(a)["amount"] == share


def test_publishing_a_new_version_never_alters_past_accruals():
    with clock.frozen(T0) as c:
        ib = make_ib()
        v1 = plan_for(ib, OVERRIDES)
        client = verified_client()
        attach(client, ib)
        c.advance(timedelta(hours=1))
        payloads = [deal_payload(client, at=c.current, volume=v) for v in (3333, 10_000, 77_777)]
        on_deals_closed([message(p) for p in payloads])
        snapshot = list(
            Accrual.objects.order_by("pk").values_list("pk", "amount", "plan_version", "state")
        )
        c.advance(timedelta(minutes=5))
        plans.publish_version(
            v1.plan_id,
            {**OVERRIDES, "components": [{"type": "rebate", "rates": {"FX": 1, "METALS": 1}}]},
            by="system:test",
            reason="cut rates",
        )
        on_deals_closed([message(p) for p in payloads])  # redelivered after the change

    assert (
        list(Accrual.objects.order_by("pk").values_list("pk", "amount", "plan_version", "state"))
        == snapshot
    )


def test_a_deposit_mode_cpa_is_paid_when_the_first_deposit_lands_for_a_verified_client():
    from brokerdesk.core.bus.base import Message
    from brokerdesk.partners.consumers import on_deposit_confirmed

    cpa_plan = {
        "components": [{"type": "cpa", "amount": 15_000, "min_first_deposit": 10_000}],
        "overrides": [2000],
    }

    def deposit(client, amount, ref):
        return Message(
            event_id=ref,
            stream="payments",
            type="deposit.confirmed",
            payload={
                "client_id": str(client),
                "amount": amount,
                "currency": "USD",
                "deposit_id": ref,
            },
            occurred_at=T0.isoformat(),
        )

    with clock.frozen(T0):
        master, sub = chain(2)
        plan_for(sub, cpa_plan)
        verified, small, lead = verified_client(), verified_client(), individual_lead()
        for c in (verified, small, lead):
            attach(c, sub)
        on_deposit_confirmed(
            [
                deposit(verified, 50_000, "d1"),
                deposit(small, 5_000, "d2"),
                deposit(lead, 50_000, "d3"),
            ]
        )
        on_deposit_confirmed([deposit(verified, 90_000, "d4")])

    rows = sorted(
        Accrual.objects.filter(kind="cpa").values_list("client_id", "ib", "amount"),
        key=lambda r: r[2],
    )
    assert rows == [(verified, master.pk, 3000), (verified, sub.pk, 12_000)]


def individual_lead():
    from tests.clients.factories import individual

    return individual().pk


def test_only_finance_pays_and_only_partner_managers_adjust():
    ib = make_ib()
    with pytest.raises(PermissionDenied):
        accrual.pay_ib(ib.pk, by=user("partner_manager"), request_key="p")
    with pytest.raises(PermissionDenied):
        accrual.adjust(ib.pk, 100, by=user("finance"), reason="x", request_key="a")
    with pytest.raises(ValidationError) as err:
        accrual.pay_ib(ib.pk, by=user("finance"), request_key="p")
    assert err.value.code == "nothing_payable"


def test_evidence_explains_a_deal_closed_before_the_client_was_attributed():
    with clock.frozen(T0) as c:
        ib = make_ib()
        plan_for(ib)
        client = verified_client()
        c.advance(timedelta(hours=1))
        before = deal_payload(client, at=c.current)
        on_deals_closed([message(before)])
        attach(client, ib)
        c.advance(timedelta(hours=1))
        on_deals_closed([message(deal_payload(client, at=c.current))])

    ev = queries.evidence(ib.pk, start=T0, end=T0 + timedelta(days=1), client_id=client)
    assert [d.note for d in ev.deals] == [
        "the client was not attributed to any IB when the deal was processed",
        "",
    ]
    assert ev.total_amount == 700 and ev.total_volume == 20_000
