"""Records of notifications in the Django admin, read-only (the services are the only writers)."""

from __future__ import annotations

from django.contrib import admin

from brokerdesk.core.admin import ReadOnlyAdmin
from brokerdesk.notifications.models import Email, Notification, Preference


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "kind", "user_id", "client_id", "language", "read_at")
    list_filter = ("kind", "language")
    search_fields = ("idempotency_key", "subject")


@admin.register(Email)
class EmailAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "kind", "to_address", "language", "status", "attempts")
    list_filter = ("status", "kind")
    search_fields = ("to_address", "idempotency_key")


@admin.register(Preference)
class PreferenceAdmin(ReadOnlyAdmin):
    list_display = ("user_id", "language", "updated_at")
