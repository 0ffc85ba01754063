"""AML alerts and investigator cases, and possible sanctions matches (compliance officers)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from brokerdesk.backoffice.access import staff_page
from brokerdesk.backoffice.forms import CaseCloseForm, CaseNoteForm, HitResolveForm
from brokerdesk.backoffice.views.common import (
    error_status,
    flash_if_unshown,
    form_for_row,
    row_form,
    run_command,
)
from brokerdesk.clients import queries as client_queries
from brokerdesk.compliance import queries as compliance_queries
from brokerdesk.compliance import services as compliance
from brokerdesk.core.errors import DomainError

OFFICERS = ("compliance_officer",)
CASE_STATUSES = ("open", "investigating", "closed")


def _client_name(client_id: UUID, cache: dict[UUID, str]) -> str:
    if client_id not in cache:
        cache[client_id] = (
            client_queries.get_client(client_id).display_name
            if client_queries.client_exists(client_id)
            else str(client_id)
        )
    return cache[client_id]


def _context(status: str, failed: dict[str, Any] | None = None) -> dict[str, Any]:
    names: dict[UUID, str] = {}
    statuses = ("open", "investigating") if status == "active" else (status,)
    rows = []
    for st in statuses:
        for case in compliance_queries.cases(status=st, limit=100):
            rows.append(
                {
                    "case": case,
                    "client_name": _client_name(case.client_id, names),
                    "alerts": compliance_queries.alerts_of_case(case.id),
                    "note_form": form_for_row(CaseNoteForm, f"note-{case.id.hex}", failed),
                    "close_form": form_for_row(CaseCloseForm, f"close-{case.id.hex}", failed),
                }
            )
    hits = [
        {
            "hit": h,
            "client_name": _client_name(h.client_id, names),
            "form": form_for_row(HitResolveForm, f"hit-{h.id.hex}", failed),
        }
        for h in compliance_queries.screening_queue(limit=100)
    ]
    return {
        "rows": rows,
        "hits": hits,
        "status": status,
        "statuses": ("active", *CASE_STATUSES),
    }


@staff_page(*OFFICERS)
def aml_alerts(request: HttpRequest) -> HttpResponse:
    """Cases (with the alerts gathered into them) and open possible list matches."""
    status = request.GET.get("status", "active")
    if status not in ("active", *CASE_STATUSES):
        status = "active"
    return render(request, "backoffice/aml.html", _context(status))


def _after(
    request: HttpRequest,
    form: forms.Form,
    error: DomainError | None,
    target: str,
    done: str,
) -> HttpResponse:
    if error is None and form.is_bound and not form.errors:
        messages.success(request, done)
        return redirect("backoffice:aml_alerts")
    context = flash_if_unshown(
        request, form, error, _context("active", {"target": target, "form": form})
    )
    return render(
        request, "backoffice/aml.html", context, status=error_status(request, error, invalid=True)
    )


@require_POST
@staff_page(*OFFICERS)
def case_note(request: HttpRequest, case_id: UUID) -> HttpResponse:
    """Add an investigator's note to a case."""
    form = row_form(CaseNoteForm, f"note-{case_id.hex}", request.POST)
    error = None
    if form.is_valid():
        _done, error = run_command(
            form,
            lambda: compliance.add_case_note(
                case_id, by=request.user, text=form.cleaned_data["text"]
            ),
        )
    return _after(request, form, error, f"note-{case_id.hex}", _("Note added to the case."))


@require_POST
@staff_page(*OFFICERS)
def case_close(request: HttpRequest, case_id: UUID) -> HttpResponse:
    """Close a case with its outcome and a reason."""
    form = row_form(CaseCloseForm, f"close-{case_id.hex}", request.POST)
    error = None
    if form.is_valid():
        _done, error = run_command(
            form,
            lambda: compliance.close_case(
                case_id,
                by=request.user,
                outcome=form.cleaned_data["outcome"],
                reason=form.cleaned_data["reason"],
            ),
        )
    return _after(request, form, error, f"close-{case_id.hex}", _("Case closed."))


@require_POST
@staff_page(*OFFICERS)
def hit_resolve(request: HttpRequest, hit_id: UUID) -> HttpResponse:
    """Confirm or dismiss a possible sanctions match."""
    form = row_form(HitResolveForm, f"hit-{hit_id.hex}", request.POST)
    error = None
    if form.is_valid():
        _done, error = run_command(
            form,
            lambda: compliance.resolve_hit(
                hit_id,
                confirmed=form.cleaned_data["confirmed"],
                by=request.user,
                note=form.cleaned_data["note"],
            ),
        )
    return _after(request, form, error, f"hit-{hit_id.hex}", _("Match resolved."))
