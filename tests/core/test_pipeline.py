"""Outbox → relay → bus → consumer runner, end to end, over every bus kind."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from prometheus_client import REGISTRY

from brokerdesk.core import clock
from brokerdesk.core.bus.base import Bus, Delivery, Message
from brokerdesk.core.consumers import Consumer, ConsumerRunner, observe_depth, register
from brokerdesk.core.events import emit
from brokerdesk.core.models import DeadLetter, OutboxEvent, ProcessedEvent
from brokerdesk.core.relay import relay_all, relay_once

from .conftest import CLAIM_IDLE_MS, happened, unique

pytestmark = pytest.mark.django_db(transaction=True)


class Recorder:
    """A handler that records the messages of every call that committed."""

    def __init__(self, fail_on: set[int] | None = None) -> None:
        self.fail_on = fail_on or set()
        self.calls: list[list[int]] = []  # every call, committed or not
        self.committed: list[int] = []

    def __call__(self, messages: list[Message]) -> None:
        numbers = [m.payload["n"] for m in messages]
        self.calls.append(numbers)
        if self.fail_on & set(numbers):
            raise RuntimeError(f"cannot handle {sorted(self.fail_on & set(numbers))}")
        transaction.on_commit(lambda: self.committed.extend(numbers))


def make_consumer(stream: str, handler: Recorder, **options) -> Consumer:
    return Consumer(
        name=unique("consumer"), streams=(stream,), handler=handler, retry_backoff_s=0, **options
    )


def emit_numbers(stream: str, *numbers: int) -> None:
    with transaction.atomic():
        for n in numbers:
            emit(happened(stream, n))


def test_emitted_event_is_relayed_and_handled_once(bus: Bus, stream: str):
    handler = Recorder()
    runner = ConsumerRunner(bus, make_consumer(stream, handler))

    emit_numbers(stream, 1, 2, 3)
    assert relay_once(bus) == 3
    result = runner.drain()

    assert handler.committed == [1, 2, 3]
    assert result.processed == 3
    assert ProcessedEvent.objects.filter(consumer=runner.spec.name).count() == 3
    assert relay_once(bus) == 0
    assert runner.drain().delivered == 0
    assert handler.committed == [1, 2, 3]


def test_relay_stamps_seq_in_id_order_and_the_message_carries_it(bus: Bus, stream: str):
    emit_numbers(stream, 1, 2)
    emit_numbers(stream, 3)
    relay_all(bus, batch_size=2)

    rows = list(OutboxEvent.objects.filter(stream=stream).order_by("id"))
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    assert len({r.seq for r in rows}) == 3
    assert all(r.relayed_at is not None for r in rows)
    got = bus.read(stream, "g", "c", count=10, block_ms=1000)
    assert [d.message.headers["seq"] for d in got] == [str(r.seq) for r in rows]
    assert [d.message.event_id for d in got] == [str(r.id) for r in rows]


def test_a_rolled_back_transaction_publishes_nothing(bus: Bus, stream: str):
    handler = Recorder()
    runner = ConsumerRunner(bus, make_consumer(stream, handler))

    with pytest.raises(RuntimeError), transaction.atomic():
        emit(happened(stream, 1))
        raise RuntimeError("the change failed")

    assert relay_once(bus) == 0
    assert runner.drain().delivered == 0
    assert handler.calls == []


class CrashOnAck:
    """A bus whose ack dies, like a worker killed between the commit and the ack."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    def publish(self, messages: list[Message]) -> None:
        self.bus.publish(messages)

    def read(self, *args, **kwargs) -> list[Delivery]:
        return self.bus.read(*args, **kwargs)

    def ack(self, stream: str, group: str, deliveries: list[Delivery]) -> None:
        raise SystemExit("killed before ack")

    def depth(self, stream: str, group: str):
        return self.bus.depth(stream, group)

    def close(self) -> None:
        self.bus.close()


def test_redelivery_after_a_crash_before_ack_is_deduplicated(bus: Bus, stream: str):
    handler = Recorder()
    spec = make_consumer(stream, handler)
    emit_numbers(stream, 1, 2)
    relay_once(bus)

    with pytest.raises(SystemExit):
        ConsumerRunner(CrashOnAck(bus), spec).run_once(block_ms=1000)
    assert handler.committed == [1, 2]

    time.sleep(CLAIM_IDLE_MS / 1000 + 0.2)
    result = ConsumerRunner(bus, spec).run_once(block_ms=1000)

    assert result.delivered == 2
    assert result.duplicates == 2
    assert result.processed == 0
    assert handler.calls == [[1, 2]]
    assert bus.depth(stream, spec.name).pending == 0


class CrashAfterPublish:
    """A bus whose publish succeeds and then the relay process dies before its commit."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    def publish(self, messages: list[Message]) -> None:
        self.bus.publish(messages)
        raise SystemExit("killed after publish")


def test_a_relay_crash_after_publish_republishes_and_the_consumer_dedupes(bus: Bus, stream: str):
    handler = Recorder()
    runner = ConsumerRunner(bus, make_consumer(stream, handler))
    emit_numbers(stream, 1, 2)

    with pytest.raises(SystemExit):
        relay_once(CrashAfterPublish(bus))  # type: ignore[arg-type]
    assert OutboxEvent.objects.filter(stream=stream, relayed_at__isnull=True).count() == 2
    assert relay_once(bus) == 2
    runner.drain()

    assert sorted(handler.committed) == [1, 2]


def test_a_failing_message_is_dead_lettered_after_n_attempts_and_the_rest_processed(
    bus: Bus, stream: str
):
    handler = Recorder(fail_on={3})
    spec = make_consumer(stream, handler, max_attempts=3)
    runner = ConsumerRunner(bus, spec)
    emit_numbers(stream, 1, 2, 3, 4)
    relay_once(bus)

    result = runner.run_once(block_ms=1000)

    assert sorted(handler.committed) == [1, 2, 4]
    assert result.processed == 3
    assert result.dead_lettered == 1
    assert result.retried
    assert handler.calls[0] == [1, 2, 3, 4]  # the batch, rolled back
    assert handler.calls.count([3]) == 3  # then three tries on its own
    letter = DeadLetter.objects.get(consumer=spec.name)
    assert letter.payload["n"] == 3
    assert letter.attempts == 3
    assert "cannot handle [3]" in letter.error
    assert not ProcessedEvent.objects.filter(consumer=spec.name, event_id=letter.event_id)
    time.sleep(CLAIM_IDLE_MS / 1000 + 0.2)
    assert runner.run_once(block_ms=0).delivered == 0  # acknowledged: not redelivered
    assert REGISTRY.get_sample_value("brokerdesk_dead_letters_total", {"consumer": spec.name}) == 1


def test_a_message_that_keeps_crashing_the_worker_is_dead_lettered_unrun(bus: Bus, stream: str):
    handler = Recorder()
    spec = make_consumer(stream, handler, max_deliveries=1)
    emit_numbers(stream, 1)
    relay_once(bus)
    assert bus.read(stream, spec.name, "crashed", count=10, block_ms=1000)  # died, no ack
    time.sleep(CLAIM_IDLE_MS / 1000 + 0.2)

    result = ConsumerRunner(bus, spec).run_once(block_ms=1000)

    assert result.dead_lettered == 1
    assert handler.calls == []
    letter = DeadLetter.objects.get(consumer=spec.name)
    assert letter.attempts == 2
    assert "without an acknowledgement" in letter.error


def test_lag_is_measured_from_occurrence_and_depth_reported(bus: Bus, stream: str):
    handler = Recorder()
    spec = make_consumer(stream, handler, batch_size=2)
    with clock.frozen(datetime.now(UTC) - timedelta(seconds=90)):
        emit_numbers(stream, 1, 2, 3)
    relay_once(bus)

    result = ConsumerRunner(bus, spec).run_once(block_ms=1000)
    depth = observe_depth(bus, [spec])

    assert result.processed == 2
    assert result.lag_seconds is not None and 90 <= result.lag_seconds < 120
    gauge = REGISTRY.get_sample_value("brokerdesk_consumer_lag_seconds", {"consumer": spec.name})
    assert gauge == result.lag_seconds
    assert [(d.undelivered, d.pending) for d in depth] == [(1, 0)]
    labels = {"stream": stream, "group": spec.name, "state": "undelivered"}
    assert REGISTRY.get_sample_value("brokerdesk_stream_depth", labels) == 1


def test_a_consumer_reads_several_streams(bus: Bus):
    one, two = unique("one"), unique("two")
    handler = Recorder()
    spec = Consumer(unique("multi"), (one, two), handler, retry_backoff_s=0)
    emit_numbers(one, 1)
    emit_numbers(two, 2)
    relay_once(bus)

    ConsumerRunner(bus, spec).drain()

    assert sorted(handler.committed) == [1, 2]


def test_concurrent_relays_publish_each_event_once_in_seq_order(
    bus_factory: Callable[..., Bus], stream: str
):
    bus = bus_factory("outbox")
    for batch in range(5):
        emit_numbers(stream, *range(batch * 10, batch * 10 + 10))
    errors: list[BaseException] = []

    def relay() -> None:
        try:
            while relay_once(bus, batch_size=7):
                pass
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            from django.db import connection

            connection.close()

    threads = [threading.Thread(target=relay) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    got = bus.read(stream, "g", "c", count=100, block_ms=1000)
    assert len(got) == 50
    seqs = [int(d.message.headers["seq"]) for d in got]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 50


def test_registered_consumers_run_in_the_worker(bus: Bus, stream: str):
    from brokerdesk.core.consumers import unregister
    from brokerdesk.core.worker import drain

    handler = Recorder()
    spec = register(unique("worker"), [stream], handler, retry_backoff_s=0)
    try:
        emit_numbers(stream, 5, 6)
        totals = drain(bus, [spec])
    finally:
        unregister(spec.name)

    assert handler.committed == [5, 6]
    assert totals[spec.name].processed == 2


def test_two_consumers_of_one_group_share_the_stream_without_overlap(
    bus_kind: str, bus_factory: Callable[..., Bus], stream: str
):
    first = bus_factory(bus_kind)
    second = bus_factory(bus_kind, like=first)
    emit_numbers(stream, *range(40))
    relay_once(first)
    seen: dict[str, list[int]] = {"a": [], "b": []}
    errors: list[BaseException] = []

    def consume(name: str, bus: Bus) -> None:
        from django.db import connection

        try:
            while got := bus.read(stream, "shared", name, count=3, block_ms=300):
                seen[name].extend(d.message.payload["n"] for d in got)
                bus.ack(stream, "shared", got)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=consume, args=("a", first)),
        threading.Thread(target=consume, args=("b", second)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert sorted(seen["a"] + seen["b"]) == list(range(40))


def test_a_database_failure_is_not_dead_lettered_and_the_batch_comes_back(bus: Bus, stream: str):
    from django.db import OperationalError

    outage = {"on": True}
    handler = Recorder()

    def flaky(messages: list[Message]) -> None:
        if outage["on"]:
            raise OperationalError("server closed the connection unexpectedly")
        handler(messages)

    spec = Consumer(unique("flaky"), (stream,), flaky, retry_backoff_s=0, max_attempts=2)
    emit_numbers(stream, 1, 2)
    relay_once(bus)

    with pytest.raises(OperationalError):
        ConsumerRunner(bus, spec).run_once(block_ms=1000)
    assert not DeadLetter.objects.filter(consumer=spec.name).exists()
    assert bus.depth(stream, spec.name).pending == 2

    outage["on"] = False
    time.sleep(CLAIM_IDLE_MS / 1000 + 0.2)
    result = ConsumerRunner(bus, spec).run_once(block_ms=1000)

    assert result.processed == 2
    assert sorted(handler.committed) == [1, 2]
    assert bus.depth(stream, spec.name).pending == 0


@pytest.mark.django_db(transaction=True)
def test_a_keyed_consumer_skips_the_processed_id_bookkeeping():
    from brokerdesk.core.bus.factory import get_bus
    from brokerdesk.core.consumers import unregister

    seen: list[str] = []
    stream = f"keyed-{uuid.uuid4().hex[:8]}"
    spec = register(
        f"test.keyed.{stream}",
        [stream],
        lambda ms: seen.extend(m.event_id for m in ms),
        keyed_writes=True,
    )
    bus = get_bus(prefix=f"t{uuid.uuid4().hex[:6]}")
    try:
        bus.publish(
            [
                Message(
                    event_id=str(uuid.uuid4()),
                    stream=stream,
                    type="x",
                    payload={},
                    occurred_at="2026-11-27T00:00:00+00:00",
                )
                for _ in range(3)
            ]
        )
        ConsumerRunner(bus, spec).drain()
    finally:
        unregister(spec.name)
        bus.close()

    assert len(seen) == 3
    assert not ProcessedEvent.objects.filter(consumer=spec.name).exists()


def test_consumer_loops_keep_a_healthy_connection_and_drop_a_broken_one() -> None:
    from django.db import connection

    from brokerdesk.core.consumers import close_broken_connections

    # A connection past CONN_MAX_AGE, which close_old_connections() would close (the loops
    # used to open a new backend each time), is kept while it works.
    connection.ensure_connection()
    raw = connection.connection
    connection.close_at = time.monotonic() - 1
    close_broken_connections()
    assert connection.connection is raw
    if connection.vendor == "postgresql":  # SQLite's connections do not break
        connection.errors_occurred = True
        raw.close()  # the server went away under a failed statement
        close_broken_connections()
        assert connection.connection is None
        connection.ensure_connection()
        assert connection.is_usable()
