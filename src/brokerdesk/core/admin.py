"""Back-office views of core: the audit log and the outbox, read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from brokerdesk.core.models import AuditEntry, OutboxEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    """Lists and shows rows but never writes them: a module's services are its only writers."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("occurred_at", "chain", "seq", "actor", "action", "object_type", "object_id")
    list_filter = ("action", "object_type")
    search_fields = ("actor", "object_id", "reason")
    date_hierarchy = "occurred_at"


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin):
    list_display = ("occurred_at", "type", "stream", "aggregate_id", "relayed_at")
    list_filter = ("type", "stream")
    search_fields = ("aggregate_id", "id")
