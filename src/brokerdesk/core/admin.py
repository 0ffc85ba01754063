"""Back-office views of core: the audit log and the outbox, read-only."""

from __future__ import annotations

from django.contrib import admin

from brokerdesk.core.models import AuditEntry, OutboxEvent
from brokerdesk.ledger.admin import ReadOnlyAdmin


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("seq", "occurred_at", "actor", "action", "object_type", "object_id", "reason")
    list_filter = ("action", "object_type")
    search_fields = ("actor", "object_id", "reason")
    date_hierarchy = "occurred_at"


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin):
    list_display = ("occurred_at", "type", "stream", "aggregate_id", "relayed_at")
    list_filter = ("type", "stream")
    search_fields = ("aggregate_id", "id")
