"""Reconciliation exceptions: payments (settlement files) and trading (ledger vs platform)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from brokerdesk.backoffice import read
from brokerdesk.backoffice.access import staff_page
from brokerdesk.backoffice.forms import ResolveForm
from brokerdesk.backoffice.views.common import (
    error_status,
    flash_if_unshown,
    form_for_row,
    row_form,
    run_command,
)
from brokerdesk.core.errors import DomainError
from brokerdesk.payments import queries as payment_queries
from brokerdesk.payments import services as payments
from brokerdesk.staff.roles import Role, has_role
from brokerdesk.trading import reconciliation as trading_recon


def _context(request: HttpRequest, failed: dict[str, Any] | None = None) -> dict[str, Any]:
    payment_rows = [
        {"row": e, "form": form_for_row(ResolveForm, f"payments-{e.id.hex}", failed)}
        for e in sorted(
            payment_queries.exceptions(status="new")
            + payment_queries.exceptions(status="in_review"),
            key=lambda e: e.created_at,
        )
    ]
    trading_rows = [
        {
            "row": e,
            "ledger": read.money(e.ledger_amount, e.currency),
            "platform": read.money(e.platform_amount, e.currency),
            "form": form_for_row(ResolveForm, f"trading-{UUID(e.id).hex}", failed),
        }
        for e in trading_recon.exceptions()
    ]
    return {
        "payment_rows": payment_rows,
        "trading_rows": trading_rows,
        "can_payments": has_role(request.user, Role.FINANCE),
        "can_trading": has_role(request.user, Role.FINANCE, Role.DEALING),
    }


@staff_page(Role.FINANCE, Role.DEALING)
def recon_exceptions(request: HttpRequest) -> HttpResponse:
    """Both exception queues; each resolution needs a note."""
    return render(request, "backoffice/reconciliation.html", _context(request))


def _resolve(request: HttpRequest, target: str, command: Any) -> HttpResponse:
    form = row_form(ResolveForm, target, request.POST)
    error: DomainError | None = None
    if form.is_valid():
        _done, error = run_command(
            form, lambda: command(by=request.user, note=form.cleaned_data["note"])
        )
        if error is None:
            messages.success(request, _("Exception resolved."))
            return redirect("backoffice:recon_exceptions")
    context = flash_if_unshown(
        request, form, error, _context(request, {"target": target, "form": form})
    )
    return render(
        request,
        "backoffice/reconciliation.html",
        context,
        status=error_status(request, error, invalid=True),
    )


@require_POST
@staff_page(Role.FINANCE)
def resolve_payment_exception(request: HttpRequest, exception_id: UUID) -> HttpResponse:
    """Resolve a payments exception (finance)."""
    return _resolve(
        request,
        f"payments-{exception_id.hex}",
        lambda by, note: payments.resolve_exception(exception_id, by=by, note=note),
    )


@require_POST
@staff_page(Role.FINANCE, Role.DEALING)
def resolve_trading_exception(request: HttpRequest, exception_id: UUID) -> HttpResponse:
    """Resolve a trading-reconciliation exception (dealing or finance)."""
    return _resolve(
        request,
        f"trading-{exception_id.hex}",
        lambda by, note: trading_recon.resolve_exception(str(exception_id), by=by, note=note),
    )
