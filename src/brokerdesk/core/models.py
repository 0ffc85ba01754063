"""core tables: the transactional outbox, the audit log, the embedded bus and consumer state."""

from __future__ import annotations

from django.db import models

from brokerdesk.core.ids import new_id


class OutboxEvent(models.Model):
    """A domain event written in the same transaction as the change it describes.

    The relay publishes unrelayed rows to the bus in id order and stamps ``relayed_at``.
    """

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    seq = models.BigIntegerField(null=True, blank=True, unique=True)
    stream = models.CharField(max_length=100)
    type = models.CharField(max_length=100)
    version = models.PositiveSmallIntegerField(default=1)
    aggregate_id = models.CharField(max_length=100, blank=True, default="")
    payload = models.JSONField()
    occurred_at = models.DateTimeField()
    relayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["id"],
                name="outbox_unrelayed_idx",
                condition=models.Q(relayed_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.aggregate_id}"


class AuditEntry(models.Model):
    """One entry of the append-only, hash-chained audit log (see ``core.audit``)."""

    chain = models.PositiveSmallIntegerField(default=0)
    seq = models.BigIntegerField()
    occurred_at = models.DateTimeField()
    actor = models.CharField(max_length=200)
    action = models.CharField(max_length=100)
    object_type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=100)
    reason = models.TextField(blank=True, default="")
    before = models.JSONField(default=dict)
    after = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        indexes = [models.Index(fields=["object_type", "object_id", "seq"])]
        constraints = [
            models.UniqueConstraint(fields=["chain", "seq"], name="audit_chain_seq_uniq"),
        ]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"#{self.seq} {self.actor} {self.action} {self.object_type}:{self.object_id}"


class BusMessage(models.Model):
    """One message on a stream of the embedded (outbox) bus; ``position`` is its offset.

    Only the relay appends, under a lock, so position order is commit order and a reader
    that remembers the last position it saw never skips a message.
    """

    position = models.BigAutoField(primary_key=True)
    stream = models.CharField(max_length=100)
    event_id = models.CharField(max_length=64, unique=True)
    type = models.CharField(max_length=100)
    version = models.PositiveSmallIntegerField(default=1)
    aggregate_id = models.CharField(max_length=100, blank=True, default="")
    payload = models.JSONField()
    headers = models.JSONField(default=dict)
    occurred_at = models.CharField(max_length=40)
    published_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["stream", "position"], name="busmessage_stream_pos_idx")]

    def __str__(self) -> str:
        return f"{self.stream}#{self.position} {self.type}"


class ConsumerCursor(models.Model):
    """How far a consumer group has read a stream of the embedded bus."""

    stream = models.CharField(max_length=100)
    group = models.CharField(max_length=100)
    position = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["stream", "group"], name="consumercursor_unique")
        ]

    def __str__(self) -> str:
        return f"{self.group}@{self.stream}:{self.position}"


class PendingDelivery(models.Model):
    """A message handed to a consumer of a group and not yet acknowledged (embedded bus)."""

    stream = models.CharField(max_length=100)
    group = models.CharField(max_length=100)
    position = models.BigIntegerField()
    consumer = models.CharField(max_length=200)
    attempts = models.PositiveIntegerField(default=1)
    delivered_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["stream", "group", "position"], name="pendingdelivery_unique"
            )
        ]
        indexes = [
            models.Index(fields=["stream", "group", "delivered_at"], name="pending_idle_idx")
        ]

    def __str__(self) -> str:
        return f"{self.group}@{self.stream}#{self.position} x{self.attempts}"


class ProcessedEvent(models.Model):
    """An event a consumer has handled; the unique pair makes redelivery a no-op."""

    consumer = models.CharField(max_length=100)
    event_id = models.CharField(max_length=64)
    processed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["consumer", "event_id"], name="processedevent_unique")
        ]

    def __str__(self) -> str:
        return f"{self.consumer} {self.event_id}"


class DeadLetter(models.Model):
    """A message a consumer failed to handle after every attempt, kept for an operator."""

    consumer = models.CharField(max_length=100)
    event_id = models.CharField(max_length=64)
    stream = models.CharField(max_length=100)
    type = models.CharField(max_length=100)
    version = models.PositiveSmallIntegerField(default=1)
    aggregate_id = models.CharField(max_length=100, blank=True, default="")
    payload = models.JSONField()
    occurred_at = models.CharField(max_length=40)
    error = models.TextField()
    attempts = models.PositiveIntegerField()
    created_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["consumer", "event_id"], name="deadletter_unique")
        ]

    def __str__(self) -> str:
        return f"{self.consumer} {self.type} {self.event_id}"
