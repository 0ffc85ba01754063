"""The embedded bus: the database is the bus.

``publish`` appends ``BusMessage`` rows (a bigint position per message). Only the relay
publishes, inside its transaction and under the relay lock, so positions are assigned in
commit order and a group's cursor (``ConsumerCursor``) never jumps over a message that
commits later. A read hands out messages after the cursor and records each in
``PendingDelivery``; an acknowledgement deletes the pending row. A pending row left idle
longer than ``claim_idle_ms`` (a consumer crashed before acking) is handed out again with
its attempt count raised: delivery is at least once.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.db.models import Max, Min

from brokerdesk.core.bus.base import Delivery, Message, StreamDepth
from brokerdesk.core.models import BusMessage, ConsumerCursor, PendingDelivery

RELAY_LOCK_KEY = 0x72656C6179  # "relay": held by the relay, and by publish (re-entrant)


def take_relay_lock() -> None:
    """Serialise publishers for the rest of the current transaction.

    On PostgreSQL a transaction-scoped advisory lock; SQLite lets one writer at a time in
    (the settings open write transactions with ``BEGIN IMMEDIATE``).
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [RELAY_LOCK_KEY])


def _wall_now() -> datetime:
    return datetime.now(UTC)


def _to_message(row: BusMessage) -> Message:
    return Message(
        event_id=row.event_id,
        stream=row.stream,
        type=row.type,
        payload=row.payload,
        occurred_at=row.occurred_at,
        version=row.version,
        aggregate_id=row.aggregate_id,
        headers=dict(row.headers or {}),
    )


class OutboxBus:
    """The database-as-bus adapter (embedded mode)."""

    def __init__(self, *, claim_idle_ms: int = 30_000, poll_interval_ms: int = 100) -> None:
        self.claim_idle_ms = claim_idle_ms
        self.poll_interval_ms = poll_interval_ms

    def publish(self, messages: list[Message]) -> None:
        """Append messages in the caller's transaction; a repeated event id is ignored."""
        if not messages:
            return
        now = _wall_now()
        with transaction.atomic():
            take_relay_lock()
            BusMessage.objects.bulk_create(
                [
                    BusMessage(
                        stream=m.stream,
                        event_id=m.event_id,
                        type=m.type,
                        version=m.version,
                        aggregate_id=m.aggregate_id,
                        payload=m.payload,
                        headers=m.headers,
                        occurred_at=m.occurred_at,
                        published_at=now,
                    )
                    for m in messages
                ],
                ignore_conflicts=True,
            )

    def read(
        self, stream: str, group: str, consumer: str, count: int, block_ms: int
    ) -> list[Delivery]:
        """Reclaim idle pending messages, then new ones; poll until ``block_ms`` passes."""
        deadline = time.monotonic() + max(block_ms, 0) / 1000
        while True:
            if self._has_work(stream, group):
                deliveries = self._take(stream, group, consumer, count)
                if deliveries:
                    return deliveries
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            time.sleep(min(remaining, self.poll_interval_ms / 1000))

    def _has_work(self, stream: str, group: str) -> bool:
        """A cheap check outside any write transaction (keeps SQLite's write lock free)."""
        cursor = (
            ConsumerCursor.objects.filter(stream=stream, group=group)
            .values_list("position", flat=True)
            .first()
        )
        if BusMessage.objects.filter(stream=stream, position__gt=cursor or 0).exists():
            return True
        idle_since = _wall_now() - timedelta(milliseconds=self.claim_idle_ms)
        return PendingDelivery.objects.filter(
            stream=stream, group=group, delivered_at__lte=idle_since
        ).exists()

    def _take(self, stream: str, group: str, consumer: str, count: int) -> list[Delivery]:
        now = _wall_now()
        with transaction.atomic():
            ConsumerCursor.objects.get_or_create(stream=stream, group=group)
            cursor = ConsumerCursor.objects.select_for_update().get(stream=stream, group=group)
            idle_since = now - timedelta(milliseconds=self.claim_idle_ms)
            stale = list(
                PendingDelivery.objects.select_for_update()
                .filter(stream=stream, group=group, delivered_at__lte=idle_since)
                .order_by("position")[:count]
            )
            for pending in stale:
                pending.attempts += 1
                pending.consumer = consumer
                pending.delivered_at = now
            if stale:
                PendingDelivery.objects.bulk_update(stale, ["attempts", "consumer", "delivered_at"])
            attempts = {p.position: p.attempts for p in stale}
            rows = list(BusMessage.objects.filter(position__in=list(attempts)))
            room = count - len(stale)
            if room > 0:
                fresh = list(
                    BusMessage.objects.filter(stream=stream, position__gt=cursor.position).order_by(
                        "position"
                    )[:room]
                )
                if fresh:
                    PendingDelivery.objects.bulk_create(
                        [
                            PendingDelivery(
                                stream=stream,
                                group=group,
                                position=row.position,
                                consumer=consumer,
                                attempts=1,
                                delivered_at=now,
                            )
                            for row in fresh
                        ]
                    )
                    cursor.position = fresh[-1].position
                    cursor.save(update_fields=["position"])
                    rows.extend(fresh)
                    attempts.update({row.position: 1 for row in fresh})
        rows.sort(key=lambda r: r.position)
        return [
            Delivery(_to_message(r), str(r.position), attempts.get(r.position, 1)) for r in rows
        ]

    def ack(self, stream: str, group: str, deliveries: list[Delivery]) -> None:
        """Forget the pending deliveries: the group is done with them."""
        if not deliveries:
            return
        with transaction.atomic():
            PendingDelivery.objects.filter(
                stream=stream,
                group=group,
                position__in=[int(d.delivery_id) for d in deliveries],
            ).delete()

    def depth(self, stream: str, group: str) -> StreamDepth:
        """Messages on the stream, not yet delivered to the group, and pending."""
        cursor = (
            ConsumerCursor.objects.filter(stream=stream, group=group)
            .values_list("position", flat=True)
            .first()
        ) or 0
        messages = BusMessage.objects.filter(stream=stream)
        return StreamDepth(
            stream=stream,
            group=group,
            length=messages.count(),
            undelivered=messages.filter(position__gt=cursor).count(),
            pending=PendingDelivery.objects.filter(stream=stream, group=group).count(),
        )

    def last_position(self, stream: str) -> int:
        """The position of the newest message on ``stream`` (0 when empty)."""
        result = BusMessage.objects.filter(stream=stream).aggregate(last=Max("position"))
        return int(result["last"] or 0)

    def trim(self, before: datetime) -> int:
        """Delete messages published before ``before`` that every group has acknowledged.

        A stream no group reads is trimmed by age alone (like a retention period).
        """
        deleted = 0
        streams = (
            BusMessage.objects.filter(published_at__lt=before)
            .values_list("stream", flat=True)
            .distinct()
        )
        for stream in list(streams):
            with transaction.atomic():
                read_up_to = ConsumerCursor.objects.filter(stream=stream).aggregate(
                    low=Min("position")
                )["low"]
                doomed = BusMessage.objects.filter(stream=stream, published_at__lt=before)
                if read_up_to is not None:
                    doomed = doomed.filter(position__lte=read_up_to)
                pending = PendingDelivery.objects.filter(stream=stream).values("position")
                count, _ = doomed.exclude(position__in=pending).delete()
                deleted += count
        return deleted

    def close(self) -> None:
        """Nothing to release: the adapter uses Django's connections."""
