"""Back-office admin for clients (read-only: changes go through clients.services)."""

from django.contrib import admin

from brokerdesk.clients.models import Client, ClientTimelineEntry, PlatformLogin, Segment, Tag
from brokerdesk.core.admin import ReadOnlyAdmin


class PlatformLoginInline(admin.TabularInline):
    model = PlatformLogin
    extra = 0
    can_delete = False
    readonly_fields = ("platform", "server", "login", "currency", "is_live", "trading_account_id")
    fields = readonly_fields


@admin.register(Client)
class ClientAdmin(ReadOnlyAdmin):
    list_display = ("display_name", "email", "kind", "country", "jurisdiction", "registered_at")
    list_filter = ("kind", "jurisdiction", "segments")
    search_fields = ("email", "last_name", "first_name", "company_name", "registration_number")
    inlines = (PlatformLoginInline,)


@admin.register(ClientTimelineEntry)
class TimelineAdmin(ReadOnlyAdmin):
    list_display = ("occurred_at", "client", "kind", "summary")
    list_filter = ("kind",)
    search_fields = ("client__email",)


@admin.register(PlatformLogin)
class PlatformLoginAdmin(ReadOnlyAdmin):
    list_display = ("server", "login", "client", "currency", "is_live")
    search_fields = ("login", "server", "client__email")


admin.site.register(Segment)
admin.site.register(Tag)
