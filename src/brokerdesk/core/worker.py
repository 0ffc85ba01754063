"""The worker process: the relay and every registered consumer, each in its own thread.

``run_worker`` returns when ``stop`` is set (the ``worker`` command sets it on SIGTERM); each
thread finishes the batch in hand, acknowledges it, and closes its database connection.
``drain`` relays and consumes until nothing is left (``worker --once`` and tests).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from functools import partial

import structlog
from django.db import connection

from brokerdesk.core.bus.base import Bus
from brokerdesk.core.consumers import (
    BatchResult,
    Consumer,
    ConsumerRunner,
    close_broken_connections,
    observe_depth,
    registered,
)
from brokerdesk.core.periodic import periodic_loop
from brokerdesk.core.relay import relay_all, relay_once, unrelayed_count

log = structlog.get_logger(__name__)


def relay_loop(
    bus: Bus, stop: threading.Event, interval_s: float = 0.2, batch_size: int = 500
) -> None:
    """Relay until ``stop``; sleep ``interval_s`` whenever the outbox is empty."""
    while not stop.is_set():
        close_broken_connections()  # keep a healthy connection: no new backend per batch
        try:
            if relay_once(bus, batch_size) < batch_size:
                unrelayed_count()
                stop.wait(interval_s)
        except Exception:
            log.exception("relay_failed")
            stop.wait(1.0)


def _thread(name: str, target: Callable[[], None]) -> threading.Thread:
    def run() -> None:
        try:
            target()
        finally:
            connection.close()

    return threading.Thread(target=run, name=name, daemon=True)


def run_worker(
    bus: Bus,
    stop: threading.Event,
    consumers: Iterable[Consumer] | None = None,
    *,
    relay: bool = True,
    relay_interval_s: float = 0.2,
    depth_every_s: float = 15.0,
) -> None:
    """Run the relay and the consumers in threads until ``stop`` is set, then join them."""
    specs = list(consumers if consumers is not None else registered().values())
    threads = [
        _thread(f"consumer:{spec.name}", partial(ConsumerRunner(bus, spec).run, stop))
        for spec in specs
    ]
    if relay:
        threads.append(_thread("relay", lambda: relay_loop(bus, stop, interval_s=relay_interval_s)))
        threads.append(_thread("periodic", lambda: periodic_loop(stop)))
    for thread in threads:
        thread.start()
    log.info("worker_started", consumers=[s.name for s in specs], relay=relay)
    try:
        while not stop.wait(depth_every_s):
            try:
                observe_depth(bus, specs)
            except Exception:
                log.warning("depth_probe_failed", exc_info=True)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        connection.close()
        log.info("worker_stopped")


def drain(
    bus: Bus, consumers: Iterable[Consumer] | None = None, max_rounds: int = 100
) -> dict[str, BatchResult]:
    """Relay and consume until the outbox and every consumer's streams are empty."""
    runners = [
        ConsumerRunner(bus, spec)
        for spec in (consumers if consumers is not None else registered().values())
    ]
    totals = {runner.spec.name: BatchResult() for runner in runners}
    for _ in range(max_rounds):
        moved = relay_all(bus)
        for runner in runners:
            result = runner.drain()
            totals[runner.spec.name].add(result)
            moved += result.delivered
        if not moved:
            break
        time.sleep(0)
    return totals
