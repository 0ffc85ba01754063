"""Batch events (``core.bus.batch``): one outbox row for many events, items for consumers."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from django.db import transaction

from brokerdesk.core.bus.base import Bus, Delivery, Message
from brokerdesk.core.bus.batch import (
    batch_payload,
    batch_rows,
    expand,
    expand_deliveries,
    item_count,
    item_id,
)
from brokerdesk.core.consumers import ConsumerRunner
from brokerdesk.core.events import DomainEvent, emit
from brokerdesk.core.models import DeadLetter, OutboxEvent, ProcessedEvent
from brokerdesk.core.relay import relay_once

from .conftest import CLAIM_IDLE_MS, happened
from .test_pipeline import CrashOnAck, Recorder, make_consumer


@dataclass(frozen=True)
class ManyHappened(DomainEvent):
    """``test.happened`` for many numbers as one batch event."""

    type: ClassVar[str] = "test.many_happened"
    numbers: tuple[int, ...] = ()
    target: str = "events"

    def payload(self) -> dict[str, Any]:
        rows = [(n, f"a{n % 2}") for n in self.numbers]
        return batch_payload("test.happened", ("n", "group"), rows, aggregate=("group", "n"))


def many_happened(stream: str, *numbers: int) -> DomainEvent:
    """A batch of ``test.happened`` events on ``stream``."""
    cls = type("ManyHappenedOn", (ManyHappened,), {"stream": stream})
    return cls(numbers=numbers, target=stream)


def batch_message(*numbers: int, headers: dict[str, str] | None = None) -> Message:
    payload = many_happened("s", *numbers).payload()
    return Message(
        "b1", "s", "test.many_happened", payload, "2026-01-01T00:00:00+00:00", 2, "x", headers or {}
    )


def test_a_batch_expands_into_items_with_stable_ids_and_their_own_aggregates() -> None:
    batch = batch_message(7, 8, 9, headers={"seq": "4", "items": "3"})
    items = expand(batch)
    assert [m.type for m in items] == ["test.happened"] * 3
    assert [m.payload for m in items] == [
        {"n": 7, "group": "a1"},
        {"n": 8, "group": "a0"},
        {"n": 9, "group": "a1"},
    ]
    assert [m.aggregate_id for m in items] == ["a1:7", "a0:8", "a1:9"]
    assert [m.event_id for m in items] == [item_id("b1", i) for i in range(3)]
    assert len({m.event_id for m in items}) == 3
    assert [m.event_id for m in expand(batch)] == [m.event_id for m in items]  # redelivered
    assert all(m.headers == {"seq": "4"} for m in items)  # not the batch's item count
    assert all((m.stream, m.version, m.occurred_at) == ("s", 2, batch.occurred_at) for m in items)
    assert item_count(batch.payload) == 3
    assert batch_rows(batch.payload) == [[7, "a1"], [8, "a0"], [9, "a1"]]


def test_rows_given_as_a_list_and_plain_messages_are_read_too() -> None:
    payload = batch_payload("test.happened", ("n",), [])
    payload["rows"], payload["count"] = [[1], [2]], None
    plain = Message("p", "s", "test.happened", {"n": 0}, "2026-01-01T00:00:00+00:00")
    assert [m.payload for m in expand(Message("b", "s", "t", payload, ""))] == [{"n": 1}, {"n": 2}]
    assert item_count(payload) == 2
    assert expand(plain) == [plain]
    assert item_count(plain.payload) == 1
    deliveries = [Delivery(plain, "d1")]
    assert expand_deliveries(deliveries) is deliveries  # nothing to expand: no copy
    mixed = expand_deliveries([Delivery(batch_message(1, 2), "d2", 3), Delivery(plain, "d3")])
    assert [(d.delivery_id, d.attempts) for d in mixed] == [("d2", 3), ("d2", 3), ("d3", 1)]


pipeline = pytest.mark.django_db(transaction=True)


def emit_batch(stream: str, *numbers: int) -> None:
    with transaction.atomic():
        emit(many_happened(stream, *numbers))


@pipeline
def test_a_batch_event_is_one_outbox_row_and_each_item_is_handled_once(bus: Bus, stream: str):
    handler = Recorder()
    runner = ConsumerRunner(bus, make_consumer(stream, handler))
    emit_batch(stream, 1, 2, 3)
    with transaction.atomic():
        emit(happened(stream, 4))  # a single event beside it

    assert OutboxEvent.objects.filter(stream=stream).count() == 2
    assert relay_once(bus) == 2
    result = runner.drain()

    assert handler.committed == [1, 2, 3, 4]
    assert result.processed == 4
    assert ProcessedEvent.objects.filter(consumer=runner.spec.name).count() == 4
    assert runner.drain().delivered == 0


@pipeline
def test_a_handler_never_gets_more_than_batch_size_items_however_the_bus_counts(
    bus: Bus, stream: str
):
    handler = Recorder()
    runner = ConsumerRunner(bus, make_consumer(stream, handler, batch_size=2))
    emit_batch(stream, 1, 2, 3, 4, 5)
    relay_once(bus)
    runner.drain()

    assert handler.committed == [1, 2, 3, 4, 5]
    assert max(len(call) for call in handler.calls) <= 2


@pipeline
def test_a_batch_redelivered_after_a_crash_before_ack_is_deduplicated_per_item(
    bus: Bus, stream: str
):
    handler = Recorder()
    spec = make_consumer(stream, handler)
    emit_batch(stream, 1, 2, 3)
    relay_once(bus)
    with pytest.raises(SystemExit):
        ConsumerRunner(CrashOnAck(bus), spec).run_once(block_ms=1000)
    time.sleep(CLAIM_IDLE_MS / 1000 + 0.2)

    result = ConsumerRunner(bus, spec).run_once(block_ms=1000)

    assert (result.delivered, result.duplicates, result.processed) == (3, 3, 0)
    assert handler.calls == [[1, 2, 3]]
    assert bus.depth(stream, spec.name).pending == 0


@pipeline
def test_a_failing_item_of_a_batch_is_dead_lettered_alone(bus: Bus, stream: str):
    handler = Recorder(fail_on={2})
    spec = make_consumer(stream, handler, max_attempts=2)
    emit_batch(stream, 1, 2, 3)
    relay_once(bus)

    result = ConsumerRunner(bus, spec).run_once(block_ms=1000)

    assert sorted(handler.committed) == [1, 3]
    assert result.dead_lettered == 1
    letter = DeadLetter.objects.get(consumer=spec.name)
    assert (letter.type, letter.payload) == ("test.happened", {"n": 2, "group": "a0"})
    time.sleep(CLAIM_IDLE_MS / 1000 + 0.2)
    assert ConsumerRunner(bus, spec).run_once(block_ms=0).delivered == 0  # acknowledged


@pipeline
def test_the_relay_tells_the_bus_how_many_items_a_batch_carries(bus: Bus, stream: str):
    emit_batch(stream, 1, 2, 3, 4, 5)
    relay_once(bus)
    [delivery] = bus.read(stream, "g", "c", count=10, block_ms=1000)
    assert delivery.message.headers["items"] == "5"
    assert delivery.message.type == "test.many_happened"


@pipeline
def test_a_lingering_consumer_gathers_what_arrives_meanwhile_into_one_batch(bus: Bus, stream: str):
    handler = Recorder()
    runner = ConsumerRunner(bus, make_consumer(stream, handler, linger_ms=400))
    emit_batch(stream, 1, 2)
    relay_once(bus)

    def later() -> None:
        time.sleep(0.1)
        emit_batch(stream, 3)
        relay_once(bus)

    thread = threading.Thread(target=later)
    thread.start()
    try:
        runner.run_once(block_ms=1000)
    finally:
        thread.join()
    assert handler.calls == [[1, 2, 3]]
