"""URLs of the back office, mounted at ``/backoffice/`` (the Django admin sits under it)."""

from __future__ import annotations

from django.urls import path

from brokerdesk.backoffice.views import (
    aml,
    audit,
    clients,
    dashboard,
    kyc,
    partners,
    reconciliation,
    withdrawals,
)

app_name = "backoffice"
urlpatterns = [
    path("", dashboard.dashboard, name="dashboard"),
    path("clients/", clients.client_search, name="clients"),
    path("clients/<uuid:client_id>/", clients.client_detail, name="client_detail"),
    path("kyc/", kyc.kyc_queue, name="kyc_queue"),
    path("kyc/<uuid:client_id>/", kyc.kyc_review, name="kyc_review"),
    path("kyc/documents/<uuid:document_id>/", kyc.document_viewer, name="kyc_document"),
    path(
        "kyc/documents/<uuid:document_id>/review/",
        kyc.document_review,
        name="kyc_document_review",
    ),
    path("withdrawals/", withdrawals.withdrawal_queue, name="withdrawals"),
    path(
        "withdrawals/<uuid:withdrawal_id>/decide/",
        withdrawals.withdrawal_decide,
        name="withdrawal_decide",
    ),
    path("aml/", aml.aml_alerts, name="aml_alerts"),
    path("aml/cases/<uuid:case_id>/note/", aml.case_note, name="aml_case_note"),
    path("aml/cases/<uuid:case_id>/close/", aml.case_close, name="aml_case_close"),
    path("aml/hits/<uuid:hit_id>/resolve/", aml.hit_resolve, name="aml_hit_resolve"),
    path("reconciliation/", reconciliation.recon_exceptions, name="recon_exceptions"),
    path(
        "reconciliation/payments/<uuid:exception_id>/resolve/",
        reconciliation.resolve_payment_exception,
        name="recon_resolve_payment",
    ),
    path(
        "reconciliation/trading/<uuid:exception_id>/resolve/",
        reconciliation.resolve_trading_exception,
        name="recon_resolve_trading",
    ),
    path("commissions/", partners.commissions, name="commissions"),
    path("commissions/decide/", partners.commission_decide, name="commission_decide"),
    path("ibs/", partners.ibs, name="ibs"),
    path("ibs/new/", partners.ib_create, name="ib_create"),
    path("ibs/reassign/", partners.reassign, name="ib_reassign"),
    path(
        "ibs/reassignments/<uuid:request_id>/decide/",
        partners.reassignment_decide,
        name="reassignment_decide",
    ),
    path("ibs/<uuid:ib_id>/", partners.ib_detail, name="ib_detail"),
    path("audit/", audit.audit_log, name="audit_log"),
    path("audit/verify/", audit.audit_verify, name="audit_verify"),
]
