"""core tables: the transactional outbox."""

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

    seq = models.BigIntegerField(unique=True)
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
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"#{self.seq} {self.actor} {self.action} {self.object_type}:{self.object_id}"
