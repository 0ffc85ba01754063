"""The projectors: rollups equal the source data, once per fact, and a rebuild equals them."""

from __future__ import annotations

import dataclasses
import threading
from datetime import date, timedelta
from typing import Any

import pytest
from django.db import close_old_connections, connection
from django.db.models import Sum

from brokerdesk.compliance.events import AmlAlertRaised
from brokerdesk.core import clock
from brokerdesk.core.bus.outbox import OutboxBus
from brokerdesk.core.consumers import ConsumerRunner, autodiscover
from brokerdesk.core.events import emit
from brokerdesk.core.ids import new_id
from brokerdesk.core.relay import relay_all
from brokerdesk.ledger import queries as ledger_queries
from brokerdesk.partners import attribution
from brokerdesk.partners.models import Accrual
from brokerdesk.payments import services as payments
from brokerdesk.reporting import queries, services
from brokerdesk.reporting.models import AccountDay, AmlDay, AppliedFact, IBDay, PaymentDay
from brokerdesk.trading.models import TradingDeal
from tests.partners.conftest import make_ib, plan_for, verified_client
from tests.payments.conftest import deliver, funded, new_client
from tests.reporting.conftest import DAY1, DAY2, open_account, outbox_messages, project, trade

pytestmark = pytest.mark.django_db

ROLLUPS = (AccountDay, IBDay, PaymentDay, AmlDay)


def rollup_state() -> dict[str, list[tuple[Any, ...]]]:
    """Every rollup row (without ids), sorted: what two projections are compared on."""
    out = {}
    for model in ROLLUPS:
        fields = [f.attname for f in model._meta.concrete_fields if f.attname != "id"]
        out[model.__name__] = sorted(
            tuple(str(v) for v in row) for row in model.objects.values_list(*fields)
        )
    return out


def deal_totals(since: date, until: date) -> dict[str, int]:
    """Straight from trading's deal table: the closing trades' volume, P/L and count."""
    closing = TradingDeal.objects.filter(
        entry__in=[1, 2, 3], action__in=[0, 1], time__date__gte=since, time__date__lte=until
    )
    sums = closing.aggregate(
        volume=Sum("volume_closed"),
        profit=Sum("profit"),
        commission=Sum("commission"),
        storage=Sum("storage"),
        fee=Sum("fee"),
    )
    return {
        "volume": sums["volume"] or 0,
        "profit": sums["profit"] or 0,
        "charges": (sums["commission"] or 0) + (sums["storage"] or 0) + (sums["fee"] or 0),
        "deals": closing.count(),
    }


def test_deal_rollups_equal_the_stored_deals_by_day_account_and_ib():
    ib = make_ib()
    alice, bob = verified_client(), verified_client()
    attribution.request_reassignment(alice, ib.pk, by="system:test", reason="setup")
    a1, a2, b1 = open_account(alice), open_account(alice), open_account(bob)
    trade(a1, at=DAY1, volume=20_000, profit=1500)
    trade(a1, at=DAY1, volume=5_000, profit=-400)
    trade(a2, at=DAY2, volume=10_000, profit=250)
    trade(b1, at=DAY2, volume=30_000, profit=-9000)

    project(outbox_messages())

    totals = queries.totals(DAY1.date(), DAY2.date())["USD"]
    expected = deal_totals(DAY1.date(), DAY2.date())
    assert {k: totals[k] for k in expected} == expected
    assert expected == {"volume": 65_000, "profit": -7650, "charges": -1400, "deals": 4}
    day1 = AccountDay.objects.get(day=DAY1.date(), login=a1)
    assert (day1.ib_id, day1.client_id, day1.volume, day1.deals) == (
        str(ib.pk),
        str(alice),
        25_000,
        2,
    )
    by_ib = {(r.day, r.ib_id): r.volume for r in IBDay.objects.all()}
    assert by_ib == {
        (DAY1.date(), str(ib.pk)): 25_000,
        (DAY2.date(), str(ib.pk)): 10_000,
        (DAY2.date(), ""): 30_000,
    }


def test_redelivered_and_re_emitted_events_are_added_once():
    client = verified_client()
    login = open_account(client)
    trade(login, at=DAY1, volume=10_000, profit=700)
    messages = outbox_messages()
    project(messages)
    before = rollup_state()

    project(messages)  # the bus delivers the same batch again
    copies = [dataclasses.replace(m, event_id=str(new_id())) for m in messages]
    project(copies)  # a producer emits the same facts again under new event ids

    assert rollup_state() == before
    assert AccountDay.objects.get(login=login).deals == 1


def test_payments_rollups_equal_the_wallet_ledger(local_psp):
    alice = new_client(verified=True)
    with clock.frozen(DAY1):
        first = funded(local_psp, alice, 100_000)
        funded(local_psp, alice, 25_000)
    with clock.frozen(DAY2):
        requested = payments.request_withdrawal(
            alice.pk,
            amount=40_000,
            currency="USD",
            method_id=first.method_id,
            request_id=f"wd-{alice.pk}",
            by=f"client:{alice.pk}",
        )
        sent = payments.send_payout(requested.id)
        assert deliver(local_psp, sent.provider_id, "paid") == "paid"

    project(outbox_messages())

    wallet = next(
        b for b in ledger_queries.balances_of("client", str(alice.pk)) if b.bucket == "cash"
    )
    row = queries.totals(DAY1.date(), DAY2.date())["USD"]
    assert row["deposits"] - row["withdrawals"] == wallet.posted == 85_000
    assert (row["deposit_count"], row["withdrawal_count"]) == (2, 1)
    methods = {(p.day, p.kind): (p.count, p.amount) for p in PaymentDay.objects.all()}
    assert methods == {
        (DAY1.date(), "deposit"): (2, 125_000),
        (DAY2.date(), "withdrawal_paid"): (1, 40_000),
    }
    assert set(PaymentDay.objects.values_list("provider", flat=True)) == {"sandbox"}


def test_commissions_go_to_the_earning_ib_and_equal_the_accruals():
    with clock.frozen(DAY1 - timedelta(days=1)):
        master = make_ib()
        ib = make_ib(master)
        plan_for(ib)
        client = verified_client()
        attribution.request_reassignment(client, ib.pk, by="system:test", reason="setup")
        login = open_account(client)
    with clock.frozen(DAY1):
        trade(login, at=DAY1, volume=20_000)
        trade(login, at=DAY1, volume=10_000)
    deals = [m for m in outbox_messages() if m.type == "trading.deal_closed"]
    from brokerdesk.partners.consumers import on_deals_closed

    on_deals_closed(deals)  # partners accrues (emits commission.accrued)
    project(outbox_messages())

    accrued = Accrual.objects.filter(ib_id=ib.pk).aggregate(total=Sum("amount"))["total"]
    row = IBDay.objects.get(ib_id=str(ib.pk), day=DAY1.date())
    assert row.ib_commission == accrued and accrued > 0
    assert row.volume == 30_000 and row.deals == 2


def test_a_dealer_correction_moves_the_ib_commission_rollup_by_its_net_change():
    from brokerdesk.partners.consumers import on_deals_closed, on_deals_corrected
    from tests.partners.test_corrections import corrected, correction_message, state

    with clock.frozen(DAY1 - timedelta(days=1)):
        ib = make_ib()
        plan_for(ib)
        client = verified_client()
        attribution.request_reassignment(client, ib.pk, by="system:test", reason="setup")
        login = open_account(client)
    with clock.frozen(DAY1):
        trade(login, at=DAY1, volume=10_000)
    [deal] = [m for m in outbox_messages() if m.type == "trading.deal_closed"]
    on_deals_closed([deal])
    project(outbox_messages())
    seen = {m.event_id for m in outbox_messages()}
    before = IBDay.objects.get(ib_id=str(ib.pk), day=DAY1.date()).ib_commission

    closed = deal.payload  # as trading.deal_closed carries it; the helpers want these too
    p = {**closed, "swap": closed["storage"], "time": DAY1.isoformat()}
    with clock.frozen(DAY1 + timedelta(hours=2)):
        on_deals_corrected([correction_message(corrected(p, 1, state(p, volume=30_000)))])
    fresh = outbox_messages(after=seen)
    assert [m.type for m in fresh if m.stream == "partners"] == ["commission.corrected"]
    project(fresh)
    project(fresh)  # redelivered: counted once

    owed = Accrual.objects.filter(ib_id=ib.pk).exclude(state="cancelled")
    row = IBDay.objects.get(ib_id=str(ib.pk), day=DAY1.date())
    assert row.ib_commission == owed.aggregate(total=Sum("amount"))["total"] == 3 * before


def test_aml_alerts_are_counted_per_rule_and_severity():
    with clock.frozen(DAY1):
        for rule, severity in [
            ("structuring", "high"),
            ("structuring", "high"),
            ("velocity", "low"),
        ]:
            emit(
                AmlAlertRaised(client_id=new_id(), alert_id=new_id(), rule=rule, severity=severity)
            )
    messages = outbox_messages()
    project(messages)
    project(messages)

    counts = {(a.rule, a.severity): a.alerts for a in AmlDay.objects.filter(day=DAY1.date())}
    assert counts == {("structuring", "high"): 2, ("velocity", "low"): 1}


def test_a_rebuild_equals_the_incremental_projection(local_psp):
    ib = make_ib()
    client = new_client(verified=True)
    attribution.request_reassignment(client.pk, ib.pk, by="system:test", reason="setup")
    with clock.frozen(DAY1):
        funded(local_psp, client, 50_000)
        emit(
            AmlAlertRaised(client_id=client.pk, alert_id=new_id(), rule="velocity", severity="low")
        )
    login = open_account(client.pk)
    trade(login, at=DAY1, volume=10_000, profit=300)
    trade(login, at=DAY2, volume=20_000, profit=-100)
    messages = outbox_messages()
    project(messages[:3])
    project(messages)  # overlapping batches, as after a crash before the acknowledgement
    incremental = rollup_state()

    result = services.rebuild_rollups(actor="system:test")

    assert rollup_state() == incremental
    assert result.facts == AppliedFact.objects.count() == 4  # a deposit, an alert, two deals
    assert result.events == len(messages)


def test_an_unusable_event_is_refused_naming_the_field():
    from brokerdesk.core.bus.base import Message
    from brokerdesk.core.errors import ValidationError

    bad = Message(
        str(new_id()),
        "payments",
        "deposit.confirmed",
        {"payment_id": str(new_id()), "client_id": str(new_id()), "currency": "USD", "amount": 1.5},
        DAY1.isoformat(),
    )
    with pytest.raises(ValidationError) as refused:
        services.apply_messages([bad])
    assert refused.value.field == "amount"


@pytest.mark.django_db(transaction=True)
def test_events_flow_through_the_bus_to_the_registered_projectors():
    client = verified_client()
    login = open_account(client)
    trade(login, at=DAY1, volume=10_000, profit=500)
    bus = OutboxBus(poll_interval_ms=20)
    runner = ConsumerRunner(bus, autodiscover()["reporting.trading"])

    relay_all(bus)
    first = runner.drain()
    second = runner.drain()

    assert first.processed == 2 and first.dead_lettered == 0  # account opened + deal closed
    assert second.delivered == 0
    assert AccountDay.objects.get(login=login).volume == 10_000


@pytest.mark.django_db(transaction=True)
def test_two_workers_racing_on_the_same_batch_add_it_once():
    client = verified_client()
    login = open_account(client)
    for n in range(5):
        trade(login, at=DAY1 + timedelta(minutes=n), volume=1_000)
    messages = outbox_messages()
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker() -> None:
        from django.db import transaction

        try:
            barrier.wait()
            with transaction.atomic():
                services.apply_messages(messages)
        except BaseException as exc:
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    if connection.vendor == "sqlite":  # writers are serialised; a busy error is possible there
        errors = [e for e in errors if "locked" not in str(e)]
    assert not errors
    row = AccountDay.objects.get(login=login)
    assert (row.deals, row.volume) == (5, 5_000)


def test_the_demo_seed_projects_stored_events_once():
    from brokerdesk.reporting.demo import seed

    client = verified_client()
    trade(open_account(client), at=DAY1, volume=10_000)

    first, again = seed(), seed()

    assert first.startswith("rollups: 1 new facts") and again.startswith("rollups: 0 new facts")
    assert AccountDay.objects.get(day=DAY1.date()).deals == 1


def test_reversals_and_returned_payouts_subtract_from_the_day_they_happen():
    from brokerdesk.payments.events import (
        DepositConfirmed,
        DepositReversed,
        WithdrawalPaid,
        WithdrawalReturned,
    )

    client, deposit, payout = new_id(), new_id(), new_id()
    common = {"client_id": client, "currency": "EUR", "actor": "psp:sandbox"}
    with clock.frozen(DAY1):
        emit(
            DepositConfirmed(
                payment_id=deposit, reference="d1", amount=90_000, provider="sandbox", **common
            )
        )
        emit(WithdrawalPaid(payment_id=payout, reference="w1", amount=30_000, **common))
    with clock.frozen(DAY2):
        emit(
            DepositReversed(
                payment_id=deposit, reference="d1", amount=90_000, reason="chargeback", **common
            )
        )
        emit(WithdrawalReturned(payment_id=payout, reference="w1", amount=30_000, **common))

    project(outbox_messages())

    day1, day2 = (IBDay.objects.get(day=d.date(), currency="EUR") for d in (DAY1, DAY2))
    assert (day1.deposits, day1.withdrawals, day1.deposit_count) == (90_000, 30_000, 1)
    assert (day2.deposits, day2.withdrawals, day2.deposit_count) == (-90_000, -30_000, 0)
    kinds = {(p.day, p.kind, p.provider): p.amount for p in PaymentDay.objects.all()}
    assert kinds == {
        (DAY1.date(), "deposit", "sandbox"): 90_000,
        (DAY1.date(), "withdrawal_paid", "unknown"): 30_000,
        (DAY2.date(), "deposit_reversed", "unknown"): 90_000,
        (DAY2.date(), "withdrawal_returned", "unknown"): 30_000,
    }


def test_the_rebuild_command_prints_what_it_replayed():
    import io
    import json

    from django.core.management import call_command

    trade(open_account(verified_client()), at=DAY1, volume=10_000)
    out = io.StringIO()

    call_command("rebuild_rollups", stdout=out)

    assert json.loads(out.getvalue()) == {"events": 2, "facts": 1}
    assert AccountDay.objects.get(day=DAY1.date()).volume == 10_000
