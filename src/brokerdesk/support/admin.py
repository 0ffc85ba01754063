"""Back-office admin for support (read-only: changes go through support.services)."""

from django.contrib import admin

from brokerdesk.core.admin import ReadOnlyAdmin
from brokerdesk.support.models import SlaTarget, Ticket, TicketChange


@admin.register(Ticket)
class TicketAdmin(ReadOnlyAdmin):
    list_display = ("reference", "subject", "queue", "priority", "status", "created_at")
    list_filter = ("queue", "status", "priority", "category", "source")
    search_fields = ("reference", "subject", "requester_email")
    exclude = ("idempotency_key",)


@admin.register(TicketChange)
class TicketChangeAdmin(ReadOnlyAdmin):
    list_display = ("occurred_at", "ticket", "action", "from_value", "to_value", "actor")
    list_filter = ("action",)


@admin.register(SlaTarget)
class SlaTargetAdmin(ReadOnlyAdmin):
    list_display = ("priority", "first_response_minutes", "resolution_minutes", "updated_by")
