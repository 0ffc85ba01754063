"""Back-office views of the ledger: read-only, because only services write it."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from brokerdesk.ledger.models import Entry, LedgerAccount, Transfer


class ReadOnlyAdmin(admin.ModelAdmin):
    """No adding, changing or deleting from the admin."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyAdmin):
    list_display = ("name", "owner_type", "currency", "bucket", "balance", "available")
    list_filter = ("owner_type", "bucket", "currency")
    search_fields = ("owner_id", "name")


class EntryInline(admin.TabularInline):
    model = Entry
    fields = ("account", "side", "amount", "is_pending", "balance_after")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Transfer)
class TransferAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "kind", "phase", "amount", "currency", "idempotency_key", "actor")
    list_filter = ("phase", "kind", "currency")
    search_fields = ("idempotency_key", "id")
    date_hierarchy = "created_at"
    inlines = [EntryInline]
