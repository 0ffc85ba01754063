"""The outbox relay: publish committed outbox events to the bus, in order, at least once.

``relay_once`` takes the relay lock (an advisory lock on PostgreSQL; SQLite has one writer
at a time), reads the oldest unrelayed rows in id order, publishes them, and stamps ``seq``
and ``relayed_at`` in the same transaction. If the process dies after publishing and before
the commit, the rows are published again by the next run: consumers deduplicate by event id
(and JetStream drops the repeat by ``Nats-Msg-Id``).
"""

from __future__ import annotations

import time
from collections import Counter

from django.db import transaction
from django.db.models import Max

from brokerdesk.core import bulk, clock, metrics
from brokerdesk.core.bus.base import Bus, Message
from brokerdesk.core.bus.outbox import take_relay_lock
from brokerdesk.core.models import OutboxEvent


def to_message(row: OutboxEvent) -> Message:
    """The bus message for an outbox row (``seq`` travels as a header when set)."""
    headers = {"seq": str(row.seq)} if row.seq is not None else {}
    return Message(
        event_id=str(row.id),
        stream=row.stream,
        type=row.type,
        payload=row.payload,
        occurred_at=row.occurred_at.isoformat(),
        version=row.version,
        aggregate_id=row.aggregate_id,
        headers=headers,
    )


def relay_once(bus: Bus, batch_size: int = 500) -> int:
    """Publish up to ``batch_size`` unrelayed outbox events; return how many were relayed."""
    started = time.perf_counter()
    with transaction.atomic():
        take_relay_lock()
        rows = list(OutboxEvent.objects.filter(relayed_at__isnull=True).order_by("id")[:batch_size])
        if not rows:
            return 0
        last_seq = OutboxEvent.objects.aggregate(last=Max("seq"))["last"] or 0
        now = clock.now()
        for offset, row in enumerate(rows, start=1):
            row.seq = last_seq + offset
            row.relayed_at = now
        bus.publish([to_message(row) for row in rows])
        bulk.update(OutboxEvent, ["seq", "relayed_at"], rows)
    for stream, count in Counter(row.stream for row in rows).items():
        metrics.EVENTS_RELAYED.labels(stream=stream).inc(count)
    metrics.RELAY_BATCH_SECONDS.observe(time.perf_counter() - started)
    return len(rows)


def relay_all(bus: Bus, batch_size: int = 500) -> int:
    """Relay until the outbox is empty; return the total relayed."""
    total = 0
    while count := relay_once(bus, batch_size):
        total += count
    return total


def unrelayed_count() -> int:
    """Outbox events waiting for the relay (also set on the gauge)."""
    count = OutboxEvent.objects.filter(relayed_at__isnull=True).count()
    metrics.OUTBOX_UNRELAYED.set(count)
    return count
