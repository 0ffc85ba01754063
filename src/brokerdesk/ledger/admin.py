"""Back-office views of the ledger: read-only, because only services write it."""

from __future__ import annotations

from django.contrib import admin

from brokerdesk.core.admin import ReadOnlyAdmin
from brokerdesk.ledger.models import Entry, LedgerAccount, Transfer


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
