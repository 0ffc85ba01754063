"""Back-office admin for compliance (read-only: decisions go through compliance.services)."""

from django.contrib import admin

from brokerdesk.compliance.models import (
    AmlAlert,
    ClientFlag,
    ComplianceCase,
    Document,
    DocumentAccess,
    KycCase,
    RuleSet,
    SanctionsList,
    ScreeningHit,
)
from brokerdesk.core.admin import ReadOnlyAdmin


@admin.register(KycCase)
class KycCaseAdmin(ReadOnlyAdmin):
    list_display = ("client_id", "state", "provider", "updated_at", "last_screened_at")
    list_filter = ("state", "provider")
    search_fields = ("client_id",)


@admin.register(RuleSet)
class RuleSetAdmin(ReadOnlyAdmin):
    list_display = ("jurisdiction", "version", "name", "effective_from", "loaded_by")
    list_filter = ("jurisdiction",)


@admin.register(ClientFlag)
class ClientFlagAdmin(ReadOnlyAdmin):
    list_display = ("client_id", "kind", "opened_at", "opened_by", "closed_at", "closed_by")
    list_filter = ("kind",)


@admin.register(Document)
class DocumentAdmin(ReadOnlyAdmin):
    list_display = ("client_id", "doc_type", "status", "content_type", "size", "expires_on")
    list_filter = ("status", "doc_type")
    exclude = ("storage_key",)


@admin.register(DocumentAccess)
class DocumentAccessAdmin(ReadOnlyAdmin):
    list_display = ("occurred_at", "document", "action", "actor")


@admin.register(SanctionsList)
class SanctionsListAdmin(ReadOnlyAdmin):
    list_display = ("source", "format", "entry_count", "loaded_at", "active")


@admin.register(ScreeningHit)
class ScreeningHitAdmin(ReadOnlyAdmin):
    list_display = ("client_id", "matched_name", "score", "status", "found_at")
    list_filter = ("status",)


@admin.register(ComplianceCase)
class ComplianceCaseAdmin(ReadOnlyAdmin):
    list_display = ("client_id", "kind", "status", "outcome", "opened_at", "assignee")
    list_filter = ("kind", "status")


@admin.register(AmlAlert)
class AmlAlertAdmin(ReadOnlyAdmin):
    list_display = ("client_id", "rule", "severity", "raised_at")
    list_filter = ("rule", "severity")
