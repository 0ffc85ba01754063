"""Fixtures for core tests: a bus of each kind, isolated per test run, and test events."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from django.conf import settings

from brokerdesk.core.bus.base import Bus, Message
from brokerdesk.core.bus.nats_jetstream import NatsJetStreamBus
from brokerdesk.core.bus.outbox import OutboxBus
from brokerdesk.core.bus.redis_streams import RedisStreamsBus
from brokerdesk.core.events import DomainEvent

RUN_ID = uuid.uuid4().hex[:10]
CLAIM_IDLE_MS = 300
BUS_KINDS = ["outbox", "redis", "nats"]


def redis_url() -> str:
    """The Redis used by adapter tests: the suite's bus when it is Redis, else TEST_REDIS_URL."""
    if settings.BUS_URL.startswith("redis"):
        return settings.BUS_URL.split("?")[0]
    return os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def nats_url() -> str:
    """The NATS server used by adapter tests."""
    return os.environ.get("TEST_NATS_URL", "nats://127.0.0.1:4222")


_counter = iter(range(1, 1_000_000))


def unique(name: str) -> str:
    """A name nobody else uses in this run (streams, groups, consumers)."""
    return f"{name}-{next(_counter)}"


def make_bus(kind: str, *, prefix: str | None = None, **options: Any) -> Bus:
    """A bus adapter of ``kind`` with a prefix unique to this test run (unless given)."""
    prefix = prefix or f"bdtest{RUN_ID}{next(_counter)}"
    claim_idle_ms = options.pop("claim_idle_ms", CLAIM_IDLE_MS)
    if kind == "outbox":
        return OutboxBus(claim_idle_ms=claim_idle_ms, poll_interval_ms=20)
    if kind == "redis":
        return RedisStreamsBus(redis_url(), prefix=prefix, claim_idle_ms=claim_idle_ms, **options)
    if kind == "nats":
        return NatsJetStreamBus(nats_url(), prefix=prefix, claim_idle_ms=claim_idle_ms, **options)
    raise ValueError(kind)


def cleanup(bus: Bus) -> None:
    """Remove what a test bus left on its server, then close it."""
    try:
        if isinstance(bus, RedisStreamsBus):
            keys = list(bus.client.scan_iter(match=f"{bus.prefix}:*"))
            if keys:
                bus.client.delete(*keys)
        elif isinstance(bus, NatsJetStreamBus):
            bus.delete_streams()
    finally:
        bus.close()


@pytest.fixture
def bus_factory() -> Iterator[Callable[..., Bus]]:
    """Build buses of any kind inside a test; all are cleaned up afterwards."""
    made: list[Bus] = []

    def factory(kind: str, *, like: Bus | None = None, **options: Any) -> Bus:
        """A new bus; ``like=other`` connects a second client to the same streams."""
        if like is not None and not isinstance(like, OutboxBus):
            options["prefix"] = getattr(like, "prefix")  # noqa: B009
        bus = make_bus(kind, **options)
        made.append(bus)
        return bus

    yield factory
    for bus in made:
        cleanup(bus)


@pytest.fixture(params=BUS_KINDS)
def bus_kind(request: pytest.FixtureRequest) -> str:
    """Each bus kind in turn."""
    return str(request.param)


@pytest.fixture
def bus(bus_kind: str, bus_factory: Callable[..., Bus]) -> Bus:
    """A bus of each kind, isolated to the test."""
    return bus_factory(bus_kind)


@pytest.fixture
def stream() -> str:
    """A stream name unique to the test."""
    return unique("stream")


def message(stream: str, n: int, **payload: Any) -> Message:
    """A test message with a fresh event id."""
    return Message(
        event_id=str(uuid.uuid4()),
        stream=stream,
        type="test.happened",
        payload={"n": n, **payload},
        occurred_at="2026-01-01T00:00:00+00:00",
    )


@dataclass(frozen=True)
class Happened(DomainEvent):
    """A test domain event; tests override the stream through ``on``."""

    type: ClassVar[str] = "test.happened"
    n: int
    target: str = "events"

    def aggregate_id(self) -> str:
        return str(self.n)


def happened(stream: str, n: int) -> DomainEvent:
    """A domain event of type ``test.happened`` on ``stream``."""
    cls = type("HappenedOn", (Happened,), {"stream": stream})
    return cls(n=n, target=stream)
