"""Withdrawal approvals with maker-checker: the queue, the checks and risk, the decision."""

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
from brokerdesk.backoffice.forms import WithdrawalDecisionForm
from brokerdesk.backoffice.views.common import (
    error_status,
    flash_if_unshown,
    form_for_row,
    is_htmx,
    row_form,
    run_command,
)
from brokerdesk.core.errors import DomainError, NotFound
from brokerdesk.payments import queries as payment_queries
from brokerdesk.payments import services as payments
from brokerdesk.staff.roles import Role, actor_label

CHECKERS = (Role.FINANCE,)


@staff_page(*CHECKERS)
def withdrawal_queue(request: HttpRequest) -> HttpResponse:
    """Withdrawals above the auto-approval threshold, waiting for a second person."""
    return render(request, "backoffice/withdrawals.html", _queue_context(request))


def _queue_context(request: HttpRequest, failed: dict[str, Any] | None = None) -> dict[str, Any]:
    reviews = [
        read.withdrawal_review(w)
        for w in payment_queries.withdrawals_in_status("pending_approval", limit=100)
    ]
    return {
        "cards": [
            {
                "review": r,
                "form": form_for_row(WithdrawalDecisionForm, r.withdrawal.id.hex, failed),
            }
            for r in reviews
        ],
        "me": actor_label(request.user),
    }


@require_POST
@staff_page(*CHECKERS)
def withdrawal_decide(request: HttpRequest, withdrawal_id: UUID) -> HttpResponse:
    """Approve or reject one withdrawal; the requester can never approve their own."""
    try:
        withdrawal = payment_queries.get_withdrawal(withdrawal_id)
    except NotFound:
        return render(request, "backoffice/not_found.html", status=404)
    form = row_form(WithdrawalDecisionForm, withdrawal.id.hex, request.POST)
    error: DomainError | None = None
    decided = None
    if form.is_valid():
        reason = form.cleaned_data["reason"]
        command = (
            payments.approve_withdrawal
            if form.cleaned_data["decision"] == "approve"
            else payments.reject_withdrawal
        )
        decided, error = run_command(
            form, lambda: command(withdrawal_id, by=request.user, reason=reason)
        )
    if decided is not None and not is_htmx(request):
        messages.success(
            request,
            _("Withdrawal %(reference)s is now %(status)s.")
            % {"reference": decided.reference, "status": decided.status},
        )
        return redirect("backoffice:withdrawals")
    if is_htmx(request):
        card = {"review": read.withdrawal_review(decided or withdrawal), "form": form}
        context = {"card": card, "me": actor_label(request.user), "decided": decided}
        return render(request, "backoffice/_withdrawal_card.html", context)
    context = _queue_context(request, {"target": withdrawal.id.hex, "form": form})
    flash_if_unshown(request, form, error, context)
    return render(
        request,
        "backoffice/withdrawals.html",
        context,
        status=error_status(request, error, invalid=True),
    )
