"""Consumers of bus streams: the registry and the batch runner.

A module declares its consumers in its own ``consumers.py``, which the worker imports
(``autodiscover``)::

    from brokerdesk.core.consumers import consumer

    @consumer("ledger.on_deposit_confirmed", streams=["payments"], batch_size=200)
    def on_deposit_confirmed(messages: list[Message]) -> None:
        ...

A consumer name is also its consumer-group name on the bus, so it must stay stable.

The runner reads a batch (at most ``batch_size`` messages, waiting at most ``max_wait_ms`` for
the first), expands batch events into their items (:mod:`brokerdesk.core.bus.batch`), drops
the messages this consumer already processed (``ProcessedEvent``), runs the handler and
records the processed ids in ONE transaction, and acknowledges after the commit.
When the batch fails, it is retried message by message (each in its own transaction, up to
``max_attempts`` tries); a message that still fails goes to ``DeadLetter`` and is acknowledged
so that the rest of the stream moves on. A database failure (``OperationalError``) is not held
against the message: the batch is left unacknowledged and the bus delivers it again. A message
the bus has delivered more than ``max_deliveries`` times without an acknowledgement (it crashed
the worker, or the database kept failing on it) is dead-lettered without running it again.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from django.db import InterfaceError, OperationalError, connections, transaction
from django.utils.module_loading import autodiscover_modules

from brokerdesk.core import metrics
from brokerdesk.core.bus.base import Bus, Delivery, Message, StreamDepth
from brokerdesk.core.bus.batch import expand_deliveries
from brokerdesk.core.models import DeadLetter, ProcessedEvent

log = structlog.get_logger(__name__)

Handler = Callable[[list[Message]], None]

# Failures of the database itself (connection lost, statement cancelled): the message is not
# dead-lettered for them; the batch stays unacknowledged and comes back after the claim time.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)


@dataclass(frozen=True)
class Consumer:
    """A declared consumer: its name (and group), streams, handler and batching limits."""

    name: str
    streams: tuple[str, ...]
    handler: Handler
    batch_size: int = 100
    max_wait_ms: int = 1000
    max_attempts: int = 3
    max_deliveries: int = 5
    retry_backoff_s: float = 0.05
    # The handler's writes are keyed (unique constraints, "on conflict do nothing"), so a
    # redelivery is already a no-op: skip the processed-id rows, which cost a read and a write
    # per message. Only for handlers that really are idempotent on their own.
    keyed_writes: bool = False
    # After a read that came back short of ``batch_size`` items, keep reading for up to this
    # long before handling (0: handle at once). For handlers with a high fixed cost per batch
    # (the trading ingest: a summary row per account touched, a commit): bigger batches at
    # the price of at most this much more latency. A full batch never waits.
    linger_ms: int = 0


_registry: dict[str, Consumer] = {}
_registry_lock = threading.Lock()


def register(
    name: str,
    streams: Iterable[str],
    handler: Handler,
    *,
    batch_size: int = 100,
    max_wait_ms: int = 1000,
    max_attempts: int = 3,
    max_deliveries: int = 5,
    retry_backoff_s: float = 0.05,
    keyed_writes: bool = False,
    linger_ms: int = 0,
) -> Consumer:
    """Declare a consumer; a second, different handler under the same name is an error."""
    spec = Consumer(
        name=name,
        streams=tuple(streams),
        handler=handler,
        batch_size=batch_size,
        max_wait_ms=max_wait_ms,
        max_attempts=max_attempts,
        max_deliveries=max_deliveries,
        retry_backoff_s=retry_backoff_s,
        keyed_writes=keyed_writes,
        linger_ms=linger_ms,
    )
    if not spec.streams:
        raise ValueError(f"consumer {name!r} reads no stream")
    with _registry_lock:
        existing = _registry.get(name)
        if existing is not None and _qualname(existing.handler) != _qualname(handler):
            raise ValueError(f"consumer {name!r} is already registered")
        _registry[name] = spec
    return spec


def consumer(
    name: str, streams: Iterable[str], **options: int | float
) -> Callable[[Handler], Handler]:
    """Decorator form of :func:`register`; returns the handler unchanged."""

    def decorate(handler: Handler) -> Handler:
        register(name, streams, handler, **options)  # type: ignore[arg-type]
        return handler

    return decorate


def unregister(name: str) -> None:
    """Remove a consumer from the registry (tests)."""
    with _registry_lock:
        _registry.pop(name, None)


def registered() -> dict[str, Consumer]:
    """Every declared consumer by name."""
    with _registry_lock:
        return dict(_registry)


def autodiscover() -> dict[str, Consumer]:
    """Import ``consumers`` of every installed app, then return the registry."""
    autodiscover_modules("consumers")
    return registered()


def _qualname(handler: Handler) -> str:
    return f"{getattr(handler, '__module__', '')}.{getattr(handler, '__qualname__', handler)}"


LINGER_POLL_S = 0.025  # between the reads of a lingering batch


def _item_count(deliveries: list[Delivery]) -> int:
    """Items in deliveries: a batch message counts as its ``items`` header (see the Redis
    bus, which sizes reads the same way)."""
    return sum(int((d.message.headers or {}).get("items", 1)) for d in deliveries)


def _age_seconds(occurred_at: str, now: datetime) -> float | None:
    try:
        when = datetime.fromisoformat(occurred_at)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((now - when).total_seconds(), 0.0)


def close_broken_connections() -> None:
    """Close this thread's database connections that failed and no longer answer, or were
    left inside a transaction; keep the healthy ones, whatever their age. For long-running
    loops (consumers, the relay): Django's ``close_old_connections`` also closes every
    connection older than ``CONN_MAX_AGE`` (60 s on PostgreSQL here, 0 on SQLite), which
    costs a new PostgreSQL backend with cold catalog caches and new temporary staging
    tables, and hides the old backend's CPU from the ingest benchmark."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is None:
            continue
        if conn.get_autocommit() != conn.settings_dict["AUTOCOMMIT"]:
            conn.close()  # left inside a transaction: do not take chances
        elif conn.errors_occurred:
            if conn.is_usable():
                conn.errors_occurred = False
            else:
                conn.close()


@dataclass
class BatchResult:
    """What one batch did."""

    delivered: int = 0
    processed: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    retried: bool = False
    lag_seconds: float | None = None
    dead_letter_ids: list[str] = field(default_factory=list)

    def add(self, other: BatchResult) -> None:
        """Accumulate another batch's counts."""
        self.delivered += other.delivered
        self.processed += other.processed
        self.duplicates += other.duplicates
        self.dead_lettered += other.dead_lettered
        self.retried = self.retried or other.retried
        self.dead_letter_ids.extend(other.dead_letter_ids)
        if other.lag_seconds is not None:
            self.lag_seconds = max(self.lag_seconds or 0.0, other.lag_seconds)


class ConsumerRunner:
    """Runs one consumer against a bus: read a batch, handle it once, ack after commit."""

    def __init__(self, bus: Bus, spec: Consumer, instance: str | None = None) -> None:
        self.bus = bus
        self.spec = spec
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}"

    def run_once(self, block_ms: int | None = None) -> BatchResult:
        """Read and handle one batch from each of the consumer's streams."""
        wait = self.spec.max_wait_ms if block_ms is None else block_ms
        per_stream = wait // len(self.spec.streams)
        total = BatchResult()
        for stream in self.spec.streams:
            deliveries = self._read(stream, per_stream)
            if deliveries:
                total.add(self.handle(stream, deliveries))
        if not total.delivered:
            metrics.CONSUMER_LAG_SECONDS.labels(consumer=self.spec.name).set(0)
        return total

    def _read(self, stream: str, block_ms: int) -> list[Delivery]:
        """One batch from ``stream``: a read, then (``linger_ms``) more reads until the batch
        is full or the linger time is up."""
        spec = self.spec
        deliveries = self.bus.read(stream, spec.name, self.instance, spec.batch_size, block_ms)
        if not deliveries or spec.linger_ms <= 0:
            return deliveries
        deadline = time.monotonic() + spec.linger_ms / 1000
        items = _item_count(deliveries)
        while items < spec.batch_size and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, LINGER_POLL_S))
            more = self.bus.read(stream, spec.name, self.instance, spec.batch_size - items, 0)
            deliveries.extend(more)
            items += _item_count(more)
        return deliveries

    def drain(self, max_rounds: int = 10_000) -> BatchResult:
        """Handle batches without waiting until a round finds nothing."""
        total = BatchResult()
        for _ in range(max_rounds):
            result = self.run_once(block_ms=0)
            total.add(result)
            if not result.delivered:
                break
        return total

    def run(self, stop: threading.Event, error_pause_s: float = 1.0) -> None:
        """Loop until ``stop`` is set; an error pauses briefly and the loop goes on."""
        while not stop.is_set():
            close_broken_connections()
            try:
                self.run_once()
            except Exception:
                log.exception("consumer_loop_failed", consumer=self.spec.name)
                stop.wait(error_pause_s)

    def handle(self, stream: str, deliveries: list[Delivery]) -> BatchResult:
        """Handle one batch read from ``stream`` and acknowledge it (a batch event counts
        as its items, see :mod:`brokerdesk.core.bus.batch`)."""
        read = deliveries
        deliveries = expand_deliveries(read)
        name = self.spec.name
        started = time.perf_counter()
        result = BatchResult(delivered=len(deliveries))
        first: dict[str, Delivery] = {}
        for delivery in deliveries:
            if delivery.message.event_id in first:
                result.duplicates += 1
            else:
                first[delivery.message.event_id] = delivery
        unique = list(first.values())
        poison = [d for d in unique if d.attempts > self.spec.max_deliveries]
        normal = [d for d in unique if d.attempts <= self.spec.max_deliveries]
        # batch events can expand past batch_size (a bus that counts them as one message):
        # the handler still never gets more than batch_size items in one transaction
        size = max(1, self.spec.batch_size)
        for start in range(0, len(normal), size):
            chunk = normal[start : start + size]
            try:
                with transaction.atomic():
                    processed, duplicates = self._process([d.message for d in chunk])
                result.processed += processed
                result.duplicates += duplicates
                metrics.CONSUMER_BATCHES.labels(consumer=name, outcome="ok").inc()
            except Exception:
                log.warning("consumer_batch_failed", consumer=name, exc_info=True)
                metrics.CONSUMER_BATCHES.labels(consumer=name, outcome="retried").inc()
                result.retried = True
                for delivery in chunk:
                    self._one_by_one(delivery, result)
        for delivery in poison:
            self._give_up(
                delivery,
                f"delivered {delivery.attempts} times without an acknowledgement",
                delivery.attempts,
                result,
            )
        self.bus.ack(stream, name, read)

        now = datetime.now(UTC)
        ages = [a for d in unique if (a := _age_seconds(d.message.occurred_at, now)) is not None]
        if ages:
            result.lag_seconds = max(ages)
            metrics.CONSUMER_LAG_SECONDS.labels(consumer=name).set(result.lag_seconds)
        metrics.CONSUMER_EVENTS.labels(consumer=name).inc(result.processed)
        if result.duplicates:
            metrics.CONSUMER_DUPLICATES.labels(consumer=name).inc(result.duplicates)
        metrics.CONSUMER_BATCH_SECONDS.labels(consumer=name).observe(time.perf_counter() - started)
        return result

    def _process(self, messages: list[Message]) -> tuple[int, int]:
        """Inside the caller's transaction: skip processed ids, run the handler, record."""
        if self.spec.keyed_writes:
            self.spec.handler(messages)
            return len(messages), 0
        ids = [m.event_id for m in messages]
        done = set(
            ProcessedEvent.objects.filter(consumer=self.spec.name, event_id__in=ids).values_list(
                "event_id", flat=True
            )
        )
        fresh = [m for m in messages if m.event_id not in done]
        if fresh:
            self.spec.handler(fresh)
            now = datetime.now(UTC)
            ProcessedEvent.objects.bulk_create(
                [
                    ProcessedEvent(consumer=self.spec.name, event_id=m.event_id, processed_at=now)
                    for m in fresh
                ]
            )
        return len(fresh), len(done)

    def _one_by_one(self, delivery: Delivery, result: BatchResult) -> None:
        error = ""
        for attempt in range(1, self.spec.max_attempts + 1):
            try:
                with transaction.atomic():
                    processed, duplicates = self._process([delivery.message])
            except TRANSIENT_ERRORS:
                if attempt == self.spec.max_attempts:
                    raise  # not the message's fault: leave it unacknowledged for redelivery
                time.sleep(self.spec.retry_backoff_s * attempt)
                continue
            except Exception:
                error = traceback.format_exc(limit=20)
                log.warning(
                    "consumer_message_failed",
                    consumer=self.spec.name,
                    event_id=delivery.message.event_id,
                    attempt=attempt,
                    exc_info=True,
                )
                if attempt < self.spec.max_attempts:
                    time.sleep(self.spec.retry_backoff_s * attempt)
                continue
            result.processed += processed
            result.duplicates += duplicates
            return
        self._give_up(delivery, error, self.spec.max_attempts, result)

    def _give_up(self, delivery: Delivery, error: str, attempts: int, result: BatchResult) -> None:
        message = delivery.message
        with transaction.atomic():
            if ProcessedEvent.objects.filter(
                consumer=self.spec.name, event_id=message.event_id
            ).exists():
                result.duplicates += 1
                return
            DeadLetter.objects.bulk_create(
                [
                    DeadLetter(
                        consumer=self.spec.name,
                        event_id=message.event_id,
                        stream=message.stream,
                        type=message.type,
                        version=message.version,
                        aggregate_id=message.aggregate_id,
                        payload=message.payload,
                        occurred_at=message.occurred_at,
                        error=error[-10_000:],
                        attempts=attempts,
                        created_at=datetime.now(UTC),
                    )
                ],
                ignore_conflicts=True,
            )
        result.dead_lettered += 1
        result.dead_letter_ids.append(message.event_id)
        metrics.DEAD_LETTERS.labels(consumer=self.spec.name).inc()
        log.error(
            "consumer_dead_letter",
            consumer=self.spec.name,
            event_id=message.event_id,
            type=message.type,
            attempts=attempts,
        )


def retry_dead_letter(letter: DeadLetter) -> None:
    """Run a dead letter's message through its consumer again; mark it resolved on success."""
    spec = registered().get(letter.consumer)
    if spec is None:
        raise LookupError(f"no consumer named {letter.consumer!r} is registered")
    message = Message(
        event_id=letter.event_id,
        stream=letter.stream,
        type=letter.type,
        payload=letter.payload,
        occurred_at=letter.occurred_at,
        version=letter.version,
        aggregate_id=letter.aggregate_id,
    )
    with transaction.atomic():
        if not ProcessedEvent.objects.filter(consumer=spec.name, event_id=letter.event_id).exists():
            spec.handler([message])
            ProcessedEvent.objects.create(
                consumer=spec.name, event_id=letter.event_id, processed_at=datetime.now(UTC)
            )
        letter.resolved_at = datetime.now(UTC)
        letter.save(update_fields=["resolved_at"])


def prune_processed(before: datetime) -> int:
    """Forget processed-event ids recorded before ``before``; return how many.

    Keep them longer than any redelivery can take (the bus's claim time, a relay outage).
    """
    count, _ = ProcessedEvent.objects.filter(processed_at__lt=before).delete()
    return count


def observe_depth(bus: Bus, consumers: Iterable[Consumer] | None = None) -> list[StreamDepth]:
    """Backlog of every consumer on each of its streams; sets the stream-depth gauges."""
    depths: list[StreamDepth] = []
    for spec in consumers if consumers is not None else registered().values():
        for stream in spec.streams:
            depth = bus.depth(stream, spec.name)
            metrics.STREAM_DEPTH.labels(stream, spec.name, "undelivered").set(depth.undelivered)
            metrics.STREAM_DEPTH.labels(stream, spec.name, "pending").set(depth.pending)
            depths.append(depth)
    return depths
