"""KYC review: the queue, a client's file with its document viewer, and the decision."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from brokerdesk.backoffice.access import staff_page
from brokerdesk.backoffice.forms import DocumentReviewForm, KycDecisionForm
from brokerdesk.backoffice.read import KYC_REVIEW_STATES
from brokerdesk.backoffice.views.common import error_status, is_htmx, row_form, run_command
from brokerdesk.clients import queries as client_queries
from brokerdesk.compliance import queries as compliance_queries
from brokerdesk.compliance import services as compliance
from brokerdesk.core.errors import DomainError, NotFound
from brokerdesk.staff.roles import Role, has_role

REVIEWERS = (Role.COMPLIANCE_OFFICER,)
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


@staff_page(*REVIEWERS)
def kyc_queue(request: HttpRequest) -> HttpResponse:
    """Clients waiting for a KYC decision, longest waiting first."""
    rows: list[dict[str, Any]] = []
    for state in KYC_REVIEW_STATES:
        for view in compliance_queries.clients_in_state(state, limit=200):
            client = client_queries.get_client(view.client_id)
            rows.append({"kyc": view, "client": client})
    rows.sort(key=lambda r: r["kyc"].updated_at or r["client"].registered_at)
    return render(request, "backoffice/kyc_queue.html", {"rows": rows})


def _review_context(client_id: UUID, form: KycDecisionForm | None = None) -> dict[str, object]:
    return {
        "client": client_queries.get_client(client_id),
        "kyc": compliance_queries.kyc_status(client_id),
        "history": compliance_queries.kyc_history(client_id),
        "documents": [
            {"doc": d, "form": row_form(DocumentReviewForm, d.id.hex)}
            for d in compliance_queries.documents_of(client_id)
        ],
        "missing": compliance_queries.missing_documents(client_id),
        "flags": compliance_queries.open_flags(client_id),
        "hits": compliance_queries.hits_of(client_id),
        "form": form or KycDecisionForm(),
    }


@staff_page(*REVIEWERS)
def kyc_review(request: HttpRequest, client_id: UUID) -> HttpResponse:
    """One client's KYC file: documents (viewer), history, flags, screening, decision form."""
    if not client_queries.client_exists(client_id):
        return render(request, "backoffice/not_found.html", status=404)
    if request.method == "POST":
        return _decide(request, client_id)
    return render(request, "backoffice/kyc_review.html", _review_context(client_id))


def _decide(request: HttpRequest, client_id: UUID) -> HttpResponse:
    form = KycDecisionForm(request.POST)
    error: DomainError | None = None
    if form.is_valid():
        decision, reason = form.cleaned_data["decision"], form.cleaned_data["reason"]
        if decision == "approve":
            result, error = run_command(
                form, lambda: compliance.approve_kyc(client_id, by=request.user, reason=reason)
            )
        elif decision == "reject":
            final = form.cleaned_data["final"]
            result, error = run_command(
                form,
                lambda: compliance.reject_kyc(
                    client_id, by=request.user, reason=reason, final=final
                ),
            )
        else:
            result, error = run_command(
                form,
                lambda: compliance.request_documents(client_id, by=request.user, reason=reason),
            )
        if error is None:
            messages.success(
                request,
                _("KYC decision recorded: the client is now %(state)s.") % {"state": result.state},
            )
            return redirect("backoffice:kyc_queue")
    return render(
        request,
        "backoffice/kyc_review.html",
        _review_context(client_id, form),
        status=error_status(request, error, invalid=True),
    )


@staff_page(Role.COMPLIANCE_OFFICER, Role.AUDITOR)
def document_viewer(request: HttpRequest, document_id: UUID) -> HttpResponse:
    """The document in a viewer, through a short-lived signed URL (issuing it is logged)."""
    try:
        document = compliance_queries.get_document(document_id)
        url = compliance.document_url(document_id, by=request.user, purpose="backoffice review")
    except DomainError as error:
        status = 404 if isinstance(error, NotFound) else error.http_status
        return render(
            request,
            "backoffice/document_viewer.html",
            {"error": error.message, "fragment": is_htmx(request)},
            status=200 if is_htmx(request) else status,
        )
    return render(
        request,
        "backoffice/document_viewer.html",
        {
            "document": document,
            "url": url,
            "is_image": document.content_type in IMAGE_TYPES,
            "fragment": is_htmx(request),
            "back": reverse(
                "backoffice:kyc_review"
                if has_role(request.user, Role.COMPLIANCE_OFFICER)
                else "backoffice:client_detail",
                args=[document.client_id],
            ),
        },
    )


@require_POST
@staff_page(*REVIEWERS)
def document_review(request: HttpRequest, document_id: UUID) -> HttpResponse:
    """Accept or reject one received document (inline with htmx)."""
    form = row_form(DocumentReviewForm, document_id.hex, request.POST)
    error: DomainError | None = None
    document = None
    if form.is_valid():
        document, error = run_command(
            form,
            lambda: compliance.review_document(
                document_id,
                accepted=form.cleaned_data["accepted"],
                by=request.user,
                note=form.cleaned_data["note"],
            ),
        )
    if document is None:
        try:
            document = compliance_queries.get_document(document_id)
        except NotFound:
            return render(request, "backoffice/not_found.html", status=404)
    if not is_htmx(request):  # without JavaScript: back to the review page with the outcome
        if form.errors:
            problems = " ".join(str(e) for errors in form.errors.values() for e in errors)
            messages.error(request, problems)
        else:
            messages.success(request, _("Document %(status)s.") % {"status": document.status})
        return redirect("backoffice:kyc_review", client_id=document.client_id)
    return render(
        request,
        "backoffice/_document_row.html",
        {
            "row": {
                "doc": document,
                "form": form if form.errors else row_form(DocumentReviewForm, document_id.hex),
            },
            "can_review": True,
        },
        status=error_status(request, error, invalid=bool(form.errors)),
    )
