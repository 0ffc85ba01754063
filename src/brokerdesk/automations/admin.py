"""Records of automations in the Django admin, read-only (the services are the only writers)."""

from __future__ import annotations

from django.contrib import admin

from brokerdesk.automations.models import Rule, RuleVersion, Run
from brokerdesk.core.admin import ReadOnlyAdmin


@admin.register(Rule)
class RuleAdmin(ReadOnlyAdmin):
    list_display = ("name", "trigger", "enabled", "version", "updated_by", "updated_at")
    list_filter = ("trigger", "enabled")
    search_fields = ("name",)


@admin.register(RuleVersion)
class RuleVersionAdmin(ReadOnlyAdmin):
    list_display = ("rule", "version", "saved_by", "saved_at")


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "rule", "event_type", "status", "attempts", "client_id")
    list_filter = ("status", "event_type")
    search_fields = ("event_id", "client_id")
