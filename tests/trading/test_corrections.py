"""Dealer corrections (deal.update / deal.delete) and resync snapshots in the ingest consumer."""

from __future__ import annotations

import random
from typing import Any

import pytest

from brokerdesk.core.bus.base import Message
from brokerdesk.core.models import OutboxEvent
from brokerdesk.trading.bridge import Bridge, MemoryCheckpointStore
from brokerdesk.trading.ingest import apply_messages
from brokerdesk.trading.models import (
    AccountSummary,
    TradingDeal,
    TradingDealCorrection,
    TradingPosition,
)
from brokerdesk.trading.platform.port import (
    AccountState,
    Deal,
    DealAction,
    DealEntry,
    EventKind,
    PlatformEvent,
    Position,
    PositionAction,
)
from brokerdesk.trading.resync import positions_snapshot_message
from tests.trading.conftest import deal_closed_payloads

pytestmark = pytest.mark.django_db
T0 = 1_790_000_000_000
LOGIN = 7001


class _NoPort:
    server_name = "live"


BRIDGE = Bridge("live", _NoPort(), lambda m: None, MemoryCheckpointStore())  # type: ignore[arg-type]


def deal_state(ticket: int, **kw: Any) -> Deal:
    values: dict[str, Any] = {
        "deal": ticket,
        "login": LOGIN,
        "action": DealAction.DEAL_SELL,
        "entry": DealEntry.ENTRY_OUT,
        "time_msc": T0 + ticket,
        "currency_digits": 2,
        "symbol": "EURUSD",
        "volume": 5000,
        "volume_ext": 5000 * 10_000,
        "volume_closed": 5000,
        "volume_closed_ext": 5000 * 10_000,
        "profit": 2000,
        "commission": -175,
        "position_id": 77,
    }
    values.update(kw)
    return Deal(**values)


def add(ticket: int, **kw: Any) -> Message:
    return BRIDGE.to_message(PlatformEvent(EventKind.DEAL_ADD, deal_state(ticket, **kw)), "live")


def update(ticket: int, version: int, **kw: Any) -> Message:
    """The dealer's correction, stamped with the platform time ``T0 + version``."""
    event = PlatformEvent(EventKind.DEAL_UPDATE, deal_state(ticket, **kw), T0 + version)
    return BRIDGE.to_message(event, "live")


def delete(ticket: int, version: int, **kw: Any) -> Message:
    event = PlatformEvent(EventKind.DEAL_DELETE, deal_state(ticket, **kw), T0 + version)
    return BRIDGE.to_message(event, "live")


def deposit(ticket: int = 1, amount: int = 100_000) -> Message:
    return add(
        ticket,
        action=DealAction.DEAL_BALANCE,
        entry=DealEntry.ENTRY_IN,
        profit=amount,
        commission=0,
        symbol="",
        volume=0,
        volume_ext=0,
        volume_closed=0,
        volume_closed_ext=0,
    )


def summary() -> AccountSummary:
    return AccountSummary.objects.get(server="live", login=LOGIN)


def stored(ticket: int) -> TradingDeal:
    return TradingDeal.objects.get(server="live", deal=ticket)


def corrected() -> list[dict[str, Any]]:
    return [
        e.payload
        for e in OutboxEvent.objects.filter(type="trading.deal_corrected").order_by("occurred_at")
    ]


def closed_events() -> list[dict[str, Any]]:
    return deal_closed_payloads()


BASE = 100_000 + 2000 - 175  # deposit + the closing deal 3 as first stored


def test_an_update_rewrites_the_deal_moves_the_summary_and_emits_before_and_after() -> None:
    apply_messages([deposit(), add(3)])
    assert summary().balance == BASE
    # A dealer cuts the trade's profit from 20.00 to 15.00 and charges 0.25 more commission.
    apply_messages([update(3, 1000, profit=1500, commission=-200)])
    row = stored(3)
    assert (row.profit, row.commission) == (1500, -200)
    s = summary()
    assert (s.balance, s.deals, s.equity) == (BASE - 500 - 25, 2, BASE - 525)
    [event] = corrected()
    assert (event["deal"], event["change"], event["version_msc"]) == (3, "update", T0 + 1000)
    assert (event["before"]["profit"], event["after"]["profit"]) == (2000, 1500)
    assert event["delta"]["balance"] == -525 and event["delta"]["profit"] == -500
    assert event["delta"]["volume_closed_ext"] == 0
    record = TradingDealCorrection.objects.get(server="live", deal=3)
    assert (record.version_msc, record.revisions, record.deleted) == (T0 + 1000, 1, False)
    assert record.history[0]["before"]["profit"] == 2000


def test_duplicate_corrections_change_nothing_and_emit_once() -> None:
    apply_messages([deposit(), add(3)])
    correction = update(3, 1000, profit=1500)
    apply_messages([correction])
    apply_messages([correction, correction])  # redelivered
    apply_messages([update(3, 1001, profit=1500)])  # the same state pushed twice (1 ms later)
    assert summary().balance == BASE - 500
    assert len(corrected()) == 1
    assert TradingDealCorrection.objects.get(server="live", deal=3).revisions == 1


def test_an_older_correction_arriving_late_does_not_overwrite_a_newer_one() -> None:
    apply_messages([deposit(), add(3)])
    apply_messages([update(3, 2000, profit=1000)])  # the newer correction first
    apply_messages([update(3, 1000, profit=1500)])  # the older one, late
    assert stored(3).profit == 1000
    assert summary().balance == BASE - 1000
    assert [e["after"]["profit"] for e in corrected()] == [1000]


def test_corrections_in_any_order_and_batching_end_in_the_same_state() -> None:
    history = [deposit(), add(3), update(3, 1000, profit=1500), update(3, 2000, profit=900)]
    rng = random.Random(3)
    for _ in range(4):
        noisy = history + history[2:]
        rng.shuffle(noisy)
        for i in range(0, len(noisy), 2):
            apply_messages(noisy[i : i + 2])
    assert stored(3).profit == 900
    s = summary()
    assert (s.balance, s.deals) == (BASE - 1100, 2)


def test_a_correction_of_a_deal_not_yet_ingested_stores_it_corrected_once() -> None:
    apply_messages([deposit()])
    # The correction overtakes the deal itself (the deal.add comes in a later batch).
    apply_messages([update(3, 1000, profit=1500)])
    assert stored(3).profit == 1500
    assert summary().balance == BASE - 500 and summary().deals == 2
    assert [e["profit"] for e in closed_events()] == [1500], "closed once, as corrected"
    assert corrected() == [], "nothing downstream to correct"
    apply_messages([add(3)])  # the original, late: a duplicate
    assert stored(3).profit == 1500
    assert (summary().balance, summary().deals) == (BASE - 500, 2)
    assert len(closed_events()) == 1


def test_an_add_and_its_correction_in_one_batch_in_either_order() -> None:
    apply_messages([deposit(), update(3, 1000, profit=1500), add(3)])
    assert stored(3).profit == 1500
    assert (summary().balance, summary().deals) == (BASE - 500, 2)


def test_a_delete_keeps_the_row_and_a_late_update_does_not_bring_it_back() -> None:
    apply_messages([deposit(), add(3)])
    apply_messages([update(3, 1000, profit=1500)])
    apply_messages([delete(3, 2000, profit=1500)])
    s = summary()
    assert (s.balance, s.deals, s.equity) == (100_000, 1, 100_000)
    assert stored(3).profit == 1500, "the deal stays, as history"
    record = TradingDealCorrection.objects.get(server="live", deal=3)
    assert record.deleted and record.revisions == 2
    events = corrected()
    assert [e["change"] for e in events] == ["update", "delete"]
    assert events[1]["after"] is None and events[1]["delta"]["balance"] == -(1500 - 175)
    # A late update (older) and even a newer one, a repeated delete, a late add: all no-ops.
    apply_messages([update(3, 1500, profit=1200)])
    apply_messages([update(3, 3000, profit=1100), delete(3, 2000), add(3)])
    assert (summary().balance, summary().deals) == (100_000, 1)
    assert stored(3).profit == 1500
    assert len(corrected()) == 2


def test_a_delete_of_a_deal_not_yet_ingested_leaves_a_tombstone() -> None:
    apply_messages([deposit()])
    apply_messages([delete(3, 1000)])
    apply_messages([add(3)])  # the deal arrives after its deletion
    assert (summary().balance, summary().deals) == (100_000, 1)
    assert closed_events() == [] and corrected() == []
    assert TradingDealCorrection.objects.get(server="live", deal=3).deleted


def test_a_balance_deal_correction_moves_balance_and_credit() -> None:
    apply_messages([deposit(1, 100_000)])
    apply_messages([update(1, 500, **_balance(90_000))])
    assert summary().balance == 90_000
    bonus = {**_balance(5_000), "action": DealAction.DEAL_CREDIT}  # a credit (bonus) deal
    apply_messages([add(2, **bonus)])
    assert summary().credit == 5_000
    apply_messages([delete(2, 600, **bonus)])
    s = summary()
    assert (s.balance, s.credit, s.equity) == (90_000, 0, 90_000)


def _balance(amount: int) -> dict[str, Any]:
    return {
        "action": DealAction.DEAL_BALANCE,
        "entry": DealEntry.ENTRY_IN,
        "profit": amount,
        "commission": 0,
        "symbol": "",
        "volume": 0,
        "volume_ext": 0,
        "volume_closed": 0,
        "volume_closed_ext": 0,
    }


# --- resync snapshots --------------------------------------------------------------------------


def pos(pid: int, profit: int, t: int, login: int = LOGIN, created: int = 0) -> Position:
    return Position(
        position=pid,
        login=login,
        symbol="EURUSD",
        action=PositionAction.POSITION_BUY,
        volume=1000,
        volume_ext=1000 * 10_000,
        price_open=108_500,
        price_current=108_400,
        digits=5,
        contract_size=100_000,
        profit=profit,
        storage=0,
        currency_digits=2,
        time_create_msc=T0 + created,
        time_update_msc=T0 + t,
    )


def position_event(p: Position, kind: EventKind = EventKind.POSITION_UPDATE) -> Message:
    return BRIDGE.to_message(PlatformEvent(kind, p, p.time_update_msc), "live")


def test_a_positions_snapshot_closes_what_closed_in_the_outage_and_adds_what_opened() -> None:
    apply_messages([deposit(), position_event(pos(9, -100, 10)), position_event(pos(10, 50, 10))])
    assert summary().open_pl == -50
    # During the outage 9 was closed and 11 opened; 10 moved. Right after the snapshot (same
    # batch) 12 opens live: the snapshot must not close it.
    snapshot = positions_snapshot_message(
        BRIDGE, [pos(10, 80, 20), pos(11, -30, 20)], T0 + 25, server_time_msc=T0 + 25
    )
    live = position_event(pos(12, 5, 30, created=30), EventKind.POSITION_ADD)
    apply_messages([snapshot, live])
    open_now = {
        p.position: p.profit for p in TradingPosition.objects.filter(server="live", closed=False)
    }
    assert open_now == {10: 80, 11: -30, 12: 5}
    assert TradingPosition.objects.get(server="live", position=9).closed
    s = summary()
    assert s.open_pl == 55 and s.equity == s.balance + s.credit + 55
    apply_messages([snapshot])  # redelivered later: an older state changes nothing
    assert TradingPosition.objects.get(server="live", position=10).profit == 80
    assert not TradingPosition.objects.get(server="live", position=12).closed, (
        "opened after the snapshot was taken"
    )
    assert summary().open_pl == 55


def test_a_snapshot_without_the_server_clock_closes_every_missing_position() -> None:
    apply_messages([deposit(), position_event(pos(9, -100, 10)), position_event(pos(10, 50, 10))])
    apply_messages([positions_snapshot_message(BRIDGE, [], T0 + 25)])
    assert not TradingPosition.objects.filter(server="live", closed=False).exists()
    assert summary().open_pl == 0 and summary().equity == summary().balance


def test_a_position_named_after_the_snapshot_in_a_columnar_batch_stays_open() -> None:
    from brokerdesk.trading.bridge import BridgeConfig

    apply_messages([deposit(), position_event(pos(9, -100, 10))])
    # No server clock: only "mentioned later in the same batch" keeps 12 open.
    snapshot = positions_snapshot_message(BRIDGE, [pos(11, -30, 20)], T0 + 25)
    batching = Bridge(
        "live",
        _NoPort(),  # type: ignore[arg-type]
        lambda m: None,
        MemoryCheckpointStore(),
        BridgeConfig(batch_rows=500),
    )
    live = batching._batch_messages(
        [PlatformEvent(EventKind.POSITION_ADD, pos(12, 5, 30, created=30), T0 + 30)], "live"
    )
    assert [m.type for m in live] == ["platform.positions"]
    apply_messages([snapshot, *live])
    open_now = {
        p.position: p.profit for p in TradingPosition.objects.filter(server="live", closed=False)
    }
    assert open_now == {11: -30, 12: 5}
    assert TradingPosition.objects.get(server="live", position=9).closed


def test_an_account_snapshot_of_the_resync_sets_the_margin_figures() -> None:
    apply_messages([deposit()])
    state = AccountState(LOGIN, 2, 100_000, 0, 99_000, 2_000, 97_000, 495_000)
    apply_messages([BRIDGE.to_message(PlatformEvent(EventKind.ACCOUNT_UPDATE, state, T0), "x")])
    s = summary()
    assert (s.margin, s.margin_free, s.margin_level, s.state_time_msc) == (
        2_000,
        97_000,
        495_000,
        T0,
    )


# --- end to end: simulator (with faults) → bridge → consumer ----------------------------------


def test_corrections_through_a_faulty_simulator_end_where_the_server_is(make_simulator) -> None:  # type: ignore[no-untyped-def]
    import threading
    import time

    from brokerdesk.trading.bridge import BridgeConfig
    from brokerdesk.trading.platform.simulator_adapter import SimulatorAdapter

    sim = make_simulator(
        "--rate", "0", "--tick-seconds", "0", "--traders", "4", "--seed", "11",
        "--faults", "duplicate=0.3,reorder=0.3",
    )  # fmt: skip
    published: list[Message] = []
    lock = threading.Lock()

    def publish(messages: list[Message]) -> None:
        with lock:
            published.extend(messages)

    def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not predicate():
            time.sleep(0.02)
        return bool(predicate())

    bridge = Bridge(
        "sim",
        SimulatorAdapter("sim", port=sim.port),
        publish,
        MemoryCheckpointStore(),
        BridgeConfig(batch_size=50, batch_wait=0.02, backoff_initial=0.05, backoff_max=0.3),
    )
    stop = threading.Event()
    thread = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
    thread.start()
    control = SimulatorAdapter("control", port=sim.port)
    control.connect()
    try:
        assert wait_for(bridge.connected.is_set)
        control.control("activity", deals=60)
        first = control.control("stats")["last_ticket"] - 59
        tickets = list(range(first, first + 60, 7))[:6]
        # A dealer corrects one deal five times in quick succession, corrects and then deletes
        # another, and deletes a third outright.
        for i in range(5):
            control.control("deal_update", ticket=tickets[0], Comment=f"fix {i}", Fee=-0.01 * i)
        control.control("deal_update", ticket=tickets[1], Storage=-1.5)
        control.control("deal_delete", ticket=tickets[1])
        control.control("deal_delete", ticket=tickets[2])
        control.control("deal_update", ticket=tickets[3], Commission=-9.99)
        control.control("faults", duplicate=0, reorder=0)
        control.control("activity", deals=10)  # flushes what the reorder fault held back
        last = control.control("stats")["last_ticket"]
        seen = lambda: {m.payload.get("deal") for m in list(published)}  # noqa: E731
        assert wait_for(lambda: last in seen() and set(tickets[:4]) <= seen())
        assert wait_for(
            lambda: (
                sum(m.type.startswith("platform.deal.") and m.type != "platform.deal.add"
                    for m in list(published)) >= 9
            )
        )  # fmt: skip
        time.sleep(0.2)
    finally:
        stop.set()
        thread.join(10)
    try:
        with lock:
            stream = list(published)
        for i in range(0, len(stream), 7):  # small batches, in stream order
            apply_messages(stream[i : i + 7])
        logins = {int(m.payload["login"]) for m in stream if m.type == "platform.deal.add"}
        for login in logins:
            server_deals = {
                d.deal: d for d in control.deals(login, 0, int(time.time() * 1000) + 60_000)
            }
            deleted = set(
                TradingDealCorrection.objects.filter(
                    server="sim", login=login, deleted=True
                ).values_list("deal", flat=True)
            )
            rows = {
                r.deal: r
                for r in TradingDeal.objects.filter(server="sim", login=login)
                if r.deal not in deleted
            }
            assert set(rows) == set(server_deals), login
            for ticket, d in server_deals.items():
                row = rows[ticket]
                assert (row.profit, row.commission, row.storage, row.fee, row.comment) == (
                    d.profit,
                    d.commission,
                    d.storage,
                    d.fee,
                    d.comment,
                ), ticket
            account = control.account_state(login)
            s = AccountSummary.objects.get(server="sim", login=login)
            assert (s.balance, s.credit) == (account.balance, account.credit), login
    finally:
        control.disconnect()
    assert TradingDeal.objects.get(server="sim", deal=tickets[0]).comment == "fix 4"
    assert {tickets[1], tickets[2]} <= set(
        TradingDealCorrection.objects.filter(server="sim", deleted=True).values_list(
            "deal", flat=True
        )
    )


def test_the_client_deal_list_leaves_out_deals_deleted_on_the_platform() -> None:
    from brokerdesk.trading.queries import deals_of
    from brokerdesk.trading.services import register_trading_account

    client = "0190f0c8-0000-7000-8000-00000000c0ff"
    register_trading_account(
        server="live",
        login=LOGIN,
        client_id=client,
        currency="USD",
        group="real\\standard",
        leverage=100,
    )
    apply_messages([deposit(), add(3), add(4, profit=100)])
    apply_messages([delete(3, 1000)])
    assert [d.deal for d in deals_of(client)] == [4, 1]


def test_the_simulator_refuses_corrections_it_cannot_make() -> None:
    from brokerdesk.trading.simulator.engine import Engine, EngineError

    engine = Engine(seed=1)
    login = engine.user_add("real\\standard", 100, "Dealer Test")["Login"]
    ticket = engine.dealer_balance(login, 10_000, DealAction.DEAL_BALANCE, "dep")["Deal"]
    with pytest.raises(EngineError) as unknown:
        engine.deal_update(ticket + 1, Profit=1.0)
    assert unknown.value.retcode == 13  # MT_RET_ERR_NOTFOUND
    with pytest.raises(EngineError) as fixed:
        engine.deal_update(ticket, Login=1)
    assert fixed.value.retcode == 3  # MT_RET_ERR_PARAMS: not a correctable field
    engine.deal_delete(ticket)
    with pytest.raises(EngineError):
        engine.deal_delete(ticket)  # already gone
    assert engine.users[login].balance == 0 and engine.deals_of(login, 0, 2**62) == []
    assert engine.deals_since(0, 10) == [] and engine.deal_count == 1, "kept, not returned"
