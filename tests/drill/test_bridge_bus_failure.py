"""What the Redis restart drill found: a failing bus must not end the bridge.

Before the fix, ``redis.ConnectionError`` raised by ``publish`` left ``Bridge.run`` (only
platform errors were handled), so the bridge thread died while its process stayed up and no
deal was published any more. Now the bridge backs off, reconnects and catches up from its
checkpoint, so every deal still reaches the bus.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import redis

from brokerdesk.core.bus.base import Message
from brokerdesk.trading.bridge import Bridge, BridgeConfig, MemoryCheckpointStore
from brokerdesk.trading.platform.simulator_adapter import SimulatorAdapter
from tests.trading.conftest import start_simulator, stop_simulator


class FlakyBus:
    """A publisher that refuses the ``fail_on``-th call as Redis does when it is down."""

    def __init__(self, fail_on: int) -> None:
        self.fail_on = fail_on
        self.calls = 0
        self.tickets: set[int] = set()
        self.lock = threading.Lock()

    def __call__(self, messages: list[Message]) -> None:
        with self.lock:
            self.calls += 1
            if self.calls == self.fail_on:
                raise redis.exceptions.ConnectionError("Error 111 connecting: refused")
            self.tickets.update(
                int(m.payload["deal"]) for m in messages if m.type == "platform.deal.add"
            )


def logged_tickets(path: Path) -> set[int]:
    return {json.loads(line)["Deal"] for line in path.read_text().splitlines() if line}


def test_bridge_survives_a_bus_failure_and_publishes_every_deal(tmp_path: Path) -> None:
    # Given a simulator making deals and a bridge whose bus fails once mid-stream,
    sim = start_simulator(tmp_path, "--rate", "300", "--traders", "5", "--seed", "4")
    bus = FlakyBus(fail_on=5)
    config = BridgeConfig(batch_wait=0.02, backoff_initial=0.05, backoff_max=0.2)
    bridge = Bridge(
        "flaky", SimulatorAdapter("flaky", port=sim.port), bus, MemoryCheckpointStore(), config
    )
    stop = threading.Event()
    thread = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
    thread.start()
    control = SimulatorAdapter("control", port=sim.port)
    control.connect()
    try:
        deadline = time.monotonic() + 30
        while bus.calls < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        # when production stops after the failure,
        control.control("set_rate", rate=0, tick_seconds=0)
        expected = logged_tickets(sim.deal_log)
        while not expected <= bus.tickets and time.monotonic() < deadline:
            time.sleep(0.05)
        # then the bridge is still running and every deal of the platform was published.
        assert bus.calls >= 10, "the bridge stopped publishing after the bus failed"
        assert thread.is_alive()
        assert any("publish failed: ConnectionError" in e for e in bridge.stats.errors)
        assert expected and expected <= bus.tickets
    finally:
        control.disconnect()
        stop.set()
        thread.join(10)
        stop_simulator(sim)
