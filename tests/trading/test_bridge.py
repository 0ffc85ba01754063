"""The bridge: reconnects, catches up, and publishes every deal the simulator made."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from brokerdesk.core.bus.base import Message
from brokerdesk.trading.bridge import (
    Bridge,
    BridgeConfig,
    Checkpoint,
    DbCheckpointStore,
    MemoryCheckpointStore,
    deal_event_id,
    run_bridges,
)
from brokerdesk.trading.config import parse_server, platform_servers
from brokerdesk.trading.models import BridgeCheckpoint
from brokerdesk.trading.platform.simulator_adapter import SimulatorAdapter

FAST = BridgeConfig(batch_size=500, batch_wait=0.02, backoff_initial=0.05, backoff_max=0.3)


class Collector:
    """A thread-safe publisher that keeps what it was given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.lock = threading.Lock()

    def __call__(self, messages: list[Message]) -> None:
        with self.lock:
            self.messages.extend(messages)

    def deal_tickets(self) -> list[int]:
        with self.lock:
            return [m.payload["deal"] for m in self.messages if m.type == "platform.deal.add"]


def logged_tickets(path: Path) -> list[int]:
    return [json.loads(line)["Deal"] for line in path.read_text().splitlines() if line]


def wait_for(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def start(bridge: Bridge) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
    thread.start()
    return stop, thread


def test_dropped_connections_mid_stream_lose_no_deal(make_simulator) -> None:  # type: ignore[no-untyped-def]
    sim = make_simulator(
        "--rate",
        "3000",
        "--traders",
        "40",
        "--seed",
        "21",
        "--faults",
        "drop_after=1500,duplicate=0.05,reorder=0.05",
    )
    publish = Collector()
    bridge = Bridge(
        "demo",
        SimulatorAdapter("demo", port=sim.port),
        publish,
        MemoryCheckpointStore(),
        FAST,
        rng=random.Random(1),
    )
    stop, thread = start(bridge)
    control = SimulatorAdapter("control", port=sim.port)
    control.connect()
    try:
        # Given a firehose that keeps cutting the bridge's connection…
        assert wait_for(lambda: bridge.stats.connects >= 3, timeout=20), bridge.stats
        # …when the server goes quiet and healthy again,
        control.control("faults", drop_after=0, duplicate=0, reorder=0)
        control.control("set_rate", rate=0, tick_seconds=0)  # no more deals, not even stop-outs
        last = control.control("stats")["last_ticket"]
        # then the bridge has published every deal the server logged: no gaps.
        assert wait_for(
            lambda: set(publish.deal_tickets()) >= set(logged_tickets(sim.deal_log)), timeout=15
        )
    finally:
        stop.set()
        thread.join(10)
        control.disconnect()
    logged = logged_tickets(sim.deal_log)
    assert logged == list(range(logged[0], last + 1)), "the simulator's own log has no gaps"
    published = publish.deal_tickets()
    assert set(published) == set(logged)
    assert len(published) > len(set(published)), "duplicates are expected (deduped downstream)"
    assert bridge.stats.disconnects >= 2 and bridge.stats.caught_up > 0
    assert bridge.checkpoint.last_ticket == last
    assert not thread.is_alive()


def test_messages_go_to_the_server_stream_with_stable_deal_ids(make_simulator) -> None:  # type: ignore[no-untyped-def]
    sim = make_simulator("--rate", "0", "--tick-seconds", "0", "--traders", "5", "--seed", "3")
    publish = Collector()
    bridge = Bridge(
        "live", SimulatorAdapter("live", port=sim.port), publish, MemoryCheckpointStore(), FAST
    )
    stop, thread = start(bridge)
    try:
        assert wait_for(bridge.connected.is_set, 5)
        control = SimulatorAdapter("control", port=sim.port)
        control.connect()
        control.control("activity", deals=50)
        last = control.control("stats")["last_ticket"]
        control.disconnect()
        assert wait_for(lambda: last in publish.deal_tickets(), 5)
    finally:
        stop.set()
        thread.join(10)
    deals = [m for m in publish.messages if m.type == "platform.deal.add"]
    assert {m.stream for m in publish.messages} == {"platform.live"}
    assert {m.headers["source"] for m in deals} == {"catchup", "live"}
    by_ticket: dict[int, set[str]] = {}
    for m in deals:
        by_ticket.setdefault(m.payload["deal"], set()).add(m.event_id)
        assert m.payload["server"] == "live" and isinstance(m.payload["profit"], int)
    assert all(ids == {deal_event_id("live", t)} for t, ids in by_ticket.items())
    assert any(m.type == "platform.position.add" for m in publish.messages)


@pytest.mark.django_db(transaction=True)
def test_checkpoint_persists_and_a_restarted_bridge_resumes_after_it(make_simulator) -> None:  # type: ignore[no-untyped-def]
    sim = make_simulator("--rate", "0", "--tick-seconds", "0", "--traders", "5", "--seed", "4")
    control = SimulatorAdapter("control", port=sim.port)
    control.connect()
    config = BridgeConfig(batch_wait=0.02, backoff_initial=0.05, catchup_margin=0)
    try:
        control.control("activity", deals=100)
        first_last = control.control("stats")["last_ticket"]
        publish = Collector()
        bridge = Bridge(
            "db", SimulatorAdapter("db", port=sim.port), publish, DbCheckpointStore(), config
        )
        stop, thread = start(bridge)
        assert wait_for(lambda: first_last in publish.deal_tickets(), 5)
        stop.set()
        thread.join(10)
        assert BridgeCheckpoint.objects.get(server="db").last_ticket == first_last

        control.control("activity", deals=20)
        second_last = control.control("stats")["last_ticket"]
        again = Collector()
        restarted = Bridge(
            "db", SimulatorAdapter("db", port=sim.port), again, DbCheckpointStore(), config
        )
        assert restarted.checkpoint.last_ticket == first_last
        stop, thread = start(restarted)
        assert wait_for(lambda: second_last in again.deal_tickets(), 5)
        stop.set()
        thread.join(10)
    finally:
        control.disconnect()
    assert min(again.deal_tickets()) == first_last + 1, "only what it had not published"
    assert set(again.deal_tickets()) == set(range(first_last + 1, second_last + 1))
    assert BridgeCheckpoint.objects.get(server="db").last_ticket == second_last


@pytest.mark.django_db
def test_db_checkpoint_never_moves_backwards() -> None:
    store = DbCheckpointStore()
    store.save("x", Checkpoint(100, 5_000))
    store.save("x", Checkpoint(90, 4_000))
    assert store.load("x") == Checkpoint(100, 5_000)


def test_backoff_grows_exponentially_with_full_jitter() -> None:
    bridge = Bridge(
        "b",
        SimulatorAdapter("b", port=1),
        Collector(),
        MemoryCheckpointStore(),
        BridgeConfig(backoff_initial=0.1, backoff_max=2.0),
        rng=random.Random(5),
    )
    samples = {attempt: [bridge.backoff(attempt) for _ in range(200)] for attempt in (0, 3, 10)}
    assert max(samples[0]) <= 0.1 and max(samples[3]) <= 0.8 and max(samples[10]) <= 2.0
    assert max(samples[10]) > 1.5, "the cap is reached"
    assert len(set(samples[3])) == 200, "jittered"


def test_an_unreachable_server_is_retried_until_stopped(unused_tcp_port_factory=None) -> None:  # type: ignore[no-untyped-def]
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    bridge = Bridge(
        "gone",
        SimulatorAdapter("gone", port=free, timeout=0.2),
        Collector(),
        MemoryCheckpointStore(),
        BridgeConfig(backoff_initial=0.01, backoff_max=0.05),
    )
    stop, thread = start(bridge)
    assert wait_for(lambda: len(bridge.stats.errors) >= 3, 5)
    stop.set()
    thread.join(5)
    assert not thread.is_alive() and bridge.stats.connects == 0


def test_several_servers_at_once_each_on_its_own_stream(make_simulator) -> None:  # type: ignore[no-untyped-def]
    live = make_simulator("--rate", "500", "--traders", "5", "--seed", "8", "--name", "live")
    demo = make_simulator("--rate", "500", "--traders", "5", "--seed", "9", "--name", "demo")
    publish = Collector()
    bridges = [
        Bridge(name, SimulatorAdapter(name, port=sim.port), publish, MemoryCheckpointStore(), FAST)
        for name, sim in (("live", live), ("demo", demo))
    ]
    stop = threading.Event()
    runner = threading.Thread(target=run_bridges, args=(bridges, stop), daemon=True)
    runner.start()
    try:
        assert wait_for(
            lambda: {m.stream for m in publish.messages} == {"platform.live", "platform.demo"}, 5
        )
    finally:
        stop.set()
        runner.join(15)
    assert not runner.is_alive()


def test_servers_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, settings) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(
        "PLATFORM_SERVERS", "live=mt5://1001@10.0.0.5:443, demo=simulator://127.0.0.1:7002"
    )
    monkeypatch.setenv("PLATFORM_SERVER_LIVE_PASSWORD", "s3cret!")
    servers = platform_servers()
    assert set(servers) == {"live", "demo"}
    assert (servers["live"].kind, servers["live"].login, servers["live"].password) == (
        "mt5",
        1001,
        "s3cret!",
    )
    assert servers["demo"].address == "127.0.0.1:7002"
    with pytest.raises(Exception, match="scheme"):
        parse_server("x", "ftp://a:1")
    with pytest.raises(CommandError, match="unknown platform server"):
        call_command("bridge", "--server", "nope", "--publisher", "stdout")


def test_the_bridge_over_the_mt5_adapter_catches_up_after_on_disconnect() -> None:
    from brokerdesk.trading.platform.mt5_adapter import MT5Adapter
    from brokerdesk.trading.simulator.engine import Engine
    from tests.trading.fakes import mt5manager as fake_mt5

    engine = Engine(name="mt5", seed=12)
    engine.add_traders(5)
    fake_mt5.SERVERS["10.9.9.9:443"] = engine
    adapter = MT5Adapter("live", "10.9.9.9:443", 1001, "pw", module=fake_mt5)
    publish = Collector()
    bridge = Bridge("live", adapter, publish, MemoryCheckpointStore(), FAST)
    stop, thread = start(bridge)
    try:
        assert wait_for(bridge.connected.is_set, 5)
        engine.random_activity(50)
        # The link dies (IMTManagerSink::OnDisconnect); deals keep happening meanwhile.
        adapter._api.drop()
        engine.random_activity(50)
        assert wait_for(lambda: bridge.stats.connects >= 2, 5)
        engine.random_activity(50)
        last = engine.last_ticket
        assert wait_for(lambda: last in publish.deal_tickets(), 5)
    finally:
        stop.set()
        thread.join(10)
        fake_mt5.SERVERS.pop("10.9.9.9:443", None)
    assert set(publish.deal_tickets()) == set(range(engine.first_deal, last + 1))
    assert "DealRequestByGroup" in adapter._api.calls, "MT5 catch-up searches by time"
