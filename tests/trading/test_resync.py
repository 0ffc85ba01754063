"""After a reconnect the bridge resynchronises positions and accounts lost in the outage."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from brokerdesk.core.bus.base import Message
from brokerdesk.trading.bridge import Bridge, BridgeConfig, MemoryCheckpointStore
from brokerdesk.trading.corrections import POSITIONS_SNAPSHOT
from brokerdesk.trading.ingest import apply_messages
from brokerdesk.trading.models import AccountSummary, TradingPosition
from brokerdesk.trading.platform.mt5_adapter import MT5Adapter
from brokerdesk.trading.platform.port import DealAction, PositionAction
from brokerdesk.trading.platform.simulator_adapter import SimulatorAdapter
from brokerdesk.trading.simulator.engine import Engine
from tests.trading.fakes import mt5manager as fake_mt5

FAST = BridgeConfig(batch_size=500, batch_wait=0.02, backoff_initial=0.05, backoff_max=0.3)
ADDRESS = "10.7.7.7:443"


class Collector:
    """A thread-safe publisher that keeps what it was given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.lock = threading.Lock()

    def __call__(self, messages: list[Message]) -> None:
        with self.lock:
            self.messages.extend(messages)

    def of(self, type_: str) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if m.type == type_]

    def all(self) -> list[Message]:
        with self.lock:
            return list(self.messages)


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def run(bridge: Bridge) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
    thread.start()
    return stop, thread


@pytest.mark.django_db
def test_positions_and_accounts_changed_in_an_outage_are_resynchronised() -> None:
    engine = Engine(name="mt5", seed=31)
    engine.add_traders(6)
    fake_mt5.SERVERS[ADDRESS] = engine
    adapter = MT5Adapter("live", ADDRESS, 1001, "pw", module=fake_mt5)
    publish = Collector()
    bridge = Bridge("live", adapter, publish, MemoryCheckpointStore(), FAST)
    stop, thread = run(bridge)
    try:
        assert wait_for(bridge.connected.is_set)
        a, b, c = engine.traders[:3]
        first = engine.open_position(a, "EURUSD", PositionAction.POSITION_BUY, 1000)
        second = engine.open_position(b, "GBPUSD", PositionAction.POSITION_SELL, 2000)
        assert wait_for(lambda: len(publish.of("platform.position.add")) >= 2)
        # The link dies; meanwhile one position closes, another opens, money moves.
        adapter._api.drop()
        engine.close_position(first["PositionID"])
        third = engine.open_position(c, "XAUUSD", PositionAction.POSITION_BUY, 500)
        engine.close_position(second["PositionID"], 1000)  # partly
        engine.dealer_balance(c, 12_345, DealAction.DEAL_BALANCE, "in the outage")
        assert wait_for(lambda: bridge.stats.connects >= 2)
        assert wait_for(lambda: len(publish.of(POSITIONS_SNAPSHOT)) >= 2)
        assert wait_for(
            lambda: engine.last_ticket in {m.payload.get("deal") for m in publish.all()}
        )
    finally:
        stop.set()
        thread.join(10)
        fake_mt5.SERVERS.pop(ADDRESS, None)
    assert "PositionRequestByGroup" in adapter._api.calls
    assert "UserAccountRequestByLogins" in adapter._api.calls
    snapshot = publish.of(POSITIONS_SNAPSHOT)[-1]
    assert {p["position"] for p in snapshot.payload["positions"]} == set(engine.positions)
    assert snapshot.headers["source"] == "resync" and snapshot.stream == "platform.live"
    accounts = {m.payload["login"] for m in publish.of("platform.account.update")}
    assert {b, c} <= accounts, "every login with an open position"

    # The consumer, fed the stream in order, ends where the server is.
    messages = publish.all()
    for i in range(0, len(messages), 50):
        apply_messages(messages[i : i + 50])
    open_rows = {
        p.position: p.volume for p in TradingPosition.objects.filter(server="live", closed=False)
    }
    assert open_rows == {pid: pos.volume for pid, pos in engine.positions.items()}
    assert third["PositionID"] in open_rows and first["PositionID"] not in open_rows
    assert open_rows[second["PositionID"]] == 1000
    for login in (a, b, c):
        server_state = engine.account(login)
        row = AccountSummary.objects.get(server="live", login=login)
        assert row.balance == round(server_state["Balance"] * 100)
        assert row.equity == round(server_state["Equity"] * 100)
        assert row.margin == round(server_state["Margin"] * 100)


def test_the_simulator_bridge_publishes_a_snapshot_on_every_connect(make_simulator) -> None:  # type: ignore[no-untyped-def]
    sim = make_simulator("--rate", "0", "--tick-seconds", "0", "--traders", "3", "--seed", "5")
    control = SimulatorAdapter("control", port=sim.port)
    control.connect()
    assert control.control("stats")["users"] == 3
    publish = Collector()
    bridge = Bridge(
        "demo", SimulatorAdapter("demo", port=sim.port), publish, MemoryCheckpointStore(), FAST
    )
    bridge.tracked_logins = {500_000, 500_002}  # type: ignore[attr-defined]
    stop, thread = run(bridge)
    try:
        assert wait_for(lambda: len(publish.of(POSITIONS_SNAPSHOT)) == 1)
        assert wait_for(lambda: len(publish.of("platform.account.update")) == 2)
    finally:
        stop.set()
        thread.join(10)
        control.disconnect()
    snapshot = publish.of(POSITIONS_SNAPSHOT)[0]
    assert snapshot.payload["positions"] == [] and snapshot.payload["server_time_msc"] > 0
    assert {m.payload["login"] for m in publish.of("platform.account.update")} == {
        500_000,
        500_002,
    }
    # The snapshot goes out after the deal catch-up, before any live event of the session.
    types = [m.type for m in publish.all()]
    assert set(types[: types.index(POSITIONS_SNAPSHOT)]) <= {"platform.deal.add"}
