"""The simulator: MT5 rules in the engine, and its fault modes over the wire."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from brokerdesk.trading.platform.port import (
    BalanceOp,
    ConfirmationLost,
    DealAction,
    DealEntry,
    DealReason,
    EventKind,
    NewUser,
    PlatformConnectionError,
    PlatformEvent,
    transfer_comment,
)
from brokerdesk.trading.platform.simulator_adapter import SimulatorAdapter
from brokerdesk.trading.simulator.engine import Engine, EngineError
from brokerdesk.trading.simulator.server import Faults


def collector() -> tuple[list[PlatformEvent], object]:
    events: list[PlatformEvent] = []
    return events, events.append


def wait_for(predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# --- engine rules -------------------------------------------------------------------------------


def test_commission_is_charged_on_both_legs_and_swap_is_realised_on_close() -> None:
    engine = Engine(seed=1)
    login = engine.user_add("real\\standard", 100, "T")["Login"]
    engine.dealer_balance(login, 1_000_000, DealAction.DEAL_BALANCE, "dep")
    opened = engine.open_position(login, "XAUUSD", 0, 10_000)
    assert opened["Commission"] == -3.5 and opened["Entry"] == DealEntry.ENTRY_IN
    engine.rollover()
    closed = engine.close_position(opened["PositionID"])
    assert closed["Commission"] == -3.5
    assert closed["Storage"] == -21.0, "XAUUSD long swap -21.00 per lot per rollover"
    assert closed["VolumeClosed"] == 10_000 and closed["VolumeClosedExt"] == 100_000_000
    balance = engine.users[login].balance
    assert balance == 1_000_000 - 350 - 350 - 2_100 + round(closed["Profit"] * 100)


def test_stop_out_closes_positions_with_reason_so() -> None:
    engine = Engine(seed=1)
    login = engine.user_add("real\\standard", 100, "T")["Login"]
    engine.dealer_balance(login, 150_000, DealAction.DEAL_BALANCE, "dep")  # 1,500 USD
    engine.open_position(login, "EURUSD", 0, 10_000)  # margin ~1,085 USD
    engine.set_price("EURUSD", engine.symbols["EURUSD"].price - 0.0100)  # -1,000 USD
    closed = engine.check_stop_out(login)
    assert [d["Reason"] for d in closed] == [DealReason.DEAL_REASON_SO]
    assert not engine.positions_by_login[login]


def test_tickets_increase_and_every_deal_is_logged(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "deals.jsonl"
    with path.open("w") as log:
        engine = Engine(seed=3, deal_log=log)
        engine.add_traders(10)
        engine.random_activity(2_000)
    tickets = [json.loads(line)["Deal"] for line in path.read_text().splitlines()]
    assert tickets == list(range(engine.first_deal, engine.first_deal + len(tickets)))
    assert len(tickets) == engine.deal_count >= 2_000
    deals = list(engine.iter_deals())
    entries = {d["Entry"] for d in deals if d["Action"] in (0, 1)}
    assert entries == {DealEntry.ENTRY_IN, DealEntry.ENTRY_OUT}
    assert any(d["VolumeClosed"] and d["Entry"] == 1 for d in deals)


def test_the_logged_json_is_exactly_the_deal() -> None:
    engine = Engine(seed=9)
    seen: list[tuple[dict, str]] = []  # type: ignore[type-arg]
    engine.listeners.append(
        lambda kind, data: seen.append((data, engine.deal_json)) if kind == "deal.add" else None
    )
    engine.add_traders(3)
    engine.dealer_balance(engine.traders[0], 5, DealAction.DEAL_BALANCE, 'quote " and \\ é')
    engine.random_activity(200)
    assert len(seen) > 200
    assert all(json.loads(line) == data for data, line in seen)


def test_dealer_balance_rules_follow_mt5() -> None:
    engine = Engine()
    login = engine.user_add("real\\standard", 100, "T")["Login"]
    with pytest.raises(EngineError) as exc:
        engine.dealer_balance(login, 100, DealAction.DEAL_BUY, "x")
    assert exc.value.retcode == 3
    with pytest.raises(EngineError) as exc:
        engine.dealer_balance(login, 10**12, DealAction.DEAL_BALANCE, "x")
    assert exc.value.retcode == 4005
    deal = engine.dealer_balance(login, 100, DealAction.DEAL_BALANCE, "x" * 40)
    assert deal["Comment"] == "x" * 31, "MT5 cuts the comment silently at 31 characters"


def test_fault_spec_parses_and_rejects_unknown_modes() -> None:
    faults = Faults.parse("duplicate=0.05,reorder=0.1,drop_after=500,lose_next=2")
    assert (faults.duplicate, faults.reorder, faults.drop_after, faults.lose_next) == (
        0.05,
        0.1,
        500,
        2,
    )
    with pytest.raises(ValueError, match="unknown fault mode"):
        Faults.parse("explode=1")


# --- over the wire ------------------------------------------------------------------------------


@pytest.fixture
def quiet_sim(make_simulator):  # type: ignore[no-untyped-def]
    return make_simulator("--rate", "0", "--tick-seconds", "0", "--traders", "3", "--seed", "11")


def test_lost_confirmation_is_applied_and_found_by_comment(quiet_sim) -> None:  # type: ignore[no-untyped-def]
    port = SimulatorAdapter("t", port=quiet_sim.port, write_timeout=1.0)
    port.connect()
    try:
        login = port.create_user(NewUser(group="real\\standard", leverage=100, name="L")).login
        since = time.time_ns() // 1_000_000 - 1000
        port.control("faults", lose_next=1)
        comment = transfer_comment(uuid.uuid4())
        with pytest.raises(ConfirmationLost):
            port.balance_operation(login, BalanceOp.DEPOSIT, 60_000, comment)
        found = port.find_balance_deal(login, comment, since)
        assert found is not None and found.profit == 60_000
        assert port.account_state(login).balance == 60_000, "applied once, reply lost"
        # The next operation is answered again.
        assert port.balance_operation(login, BalanceOp.DEPOSIT, 1, "next") > found.deal
    finally:
        port.disconnect()


def test_delayed_confirmation_still_arrives(quiet_sim) -> None:  # type: ignore[no-untyped-def]
    port = SimulatorAdapter("t", port=quiet_sim.port)
    port.connect()
    try:
        login = port.create_user(NewUser(group="real\\standard", leverage=100, name="L")).login
        port.control("faults", delay_ms=200)
        started = time.monotonic()
        port.balance_operation(login, BalanceOp.DEPOSIT, 100, "slow")
        assert time.monotonic() - started >= 0.2
    finally:
        port.disconnect()


def _stream(sim, faults: dict[str, object], deals: int) -> tuple[list[int], SimulatorAdapter]:  # type: ignore[no-untyped-def]
    events, handler = collector()
    port = SimulatorAdapter("t", port=sim.port)
    port.subscribe(handler)  # type: ignore[arg-type]
    port.connect()
    port.control("faults", **faults)
    start = port.control("stats")["last_ticket"]
    port.control("activity", deals=deals)
    end = port.control("stats")["last_ticket"]
    port.control("faults", duplicate=0, reorder=0)
    port.control("ping")  # flushes a held-back event
    assert wait_for(
        lambda: (
            {getattr(e.data, "deal", 0) for e in events if e.kind == EventKind.DEAL_ADD}
            >= set(range(start + 1, end + 1))
        )
    )
    tickets = [e.data.deal for e in events if e.kind == EventKind.DEAL_ADD]  # type: ignore[union-attr]
    return tickets, port


def test_duplicate_fault_repeats_events(quiet_sim) -> None:  # type: ignore[no-untyped-def]
    tickets, port = _stream(quiet_sim, {"duplicate": 0.2}, 300)
    port.disconnect()
    assert len(tickets) > len(set(tickets))


def test_reorder_fault_swaps_events_without_losing_any(quiet_sim) -> None:  # type: ignore[no-untyped-def]
    tickets, port = _stream(quiet_sim, {"reorder": 0.2}, 300)
    port.disconnect()
    assert tickets != sorted(tickets)
    assert len(tickets) == len(set(tickets))


def test_reorder_fault_releases_the_last_held_event_when_the_stream_goes_quiet(quiet_sim) -> None:  # type: ignore[no-untyped-def]
    # Every event is held back behind later ones; the subscriber sends nothing after the
    # burst and the fault stays on. The last event held must still arrive: it used to wait for
    # an event that never came (the pipeline SIGKILL test then waited 240 s for one deal).
    events, handler = collector()
    subscriber = SimulatorAdapter("sub", port=quiet_sim.port)
    subscriber.subscribe(handler)  # type: ignore[arg-type]
    subscriber.connect()
    operator = SimulatorAdapter("op", port=quiet_sim.port)
    operator.connect()
    try:
        operator.control("faults", reorder=1.0)
        start = operator.control("stats")["last_ticket"]
        operator.control("activity", deals=40)
        end = operator.control("stats")["last_ticket"]

        def tickets() -> list[int]:
            return [e.data.deal for e in events if e.kind == EventKind.DEAL_ADD]  # type: ignore[union-attr]

        assert wait_for(lambda: set(tickets()) >= set(range(start + 1, end + 1)), timeout=10)
        assert tickets() != sorted(tickets())  # still reordered
    finally:
        operator.disconnect()
        subscriber.disconnect()


def test_drop_fault_cuts_the_connection_mid_stream(quiet_sim) -> None:  # type: ignore[no-untyped-def]
    events, handler = collector()
    port = SimulatorAdapter("t", port=quiet_sim.port)
    port.subscribe(handler)  # type: ignore[arg-type]
    port.connect()
    try:
        port.control("faults", drop_after=50)
        with pytest.raises(PlatformConnectionError):
            port.control("activity", deals=200)  # the link dies before the answer
        assert wait_for(lambda: any(e.kind == EventKind.CONNECTION_LOST for e in events))
        assert not port.is_connected()
        received = [e for e in events if e.kind != EventKind.CONNECTION_LOST]
        assert 0 < len(received) <= 50
    finally:
        port.disconnect()


def test_the_rate_option_produces_deals_continuously(make_simulator) -> None:  # type: ignore[no-untyped-def]
    sim = make_simulator("--rate", "5000", "--traders", "50", "--seed", "2")
    port = SimulatorAdapter("t", port=sim.port)
    port.connect()
    try:
        first = port.control("stats")["last_ticket"]
        time.sleep(0.5)
        made = port.control("stats")["last_ticket"] - first
        assert 500 <= made <= 5_000
    finally:
        port.disconnect()
