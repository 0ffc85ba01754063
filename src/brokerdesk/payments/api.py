"""The payments API: the PSP webhook endpoint, and staff endpoints for the withdrawal queue
and the exceptions queue."""

from datetime import datetime
from typing import Any
from uuid import UUID

from django.http import HttpRequest, JsonResponse
from ninja import Router, Schema

from brokerdesk.payments import queries, services, views
from brokerdesk.staff.api import domain_errors, staff_only
from brokerdesk.staff.roles import Role

router = Router(tags=["payments"])
FINANCE = staff_only(Role.FINANCE)


@router.post("/webhooks/{provider}", auth=None, include_in_schema=True)
def webhook(request: HttpRequest, provider: str) -> JsonResponse:
    """A PSP webhook (signed; no session). Same handler as ``views.psp_webhook``."""
    return views.handle_webhook(request, provider)


class ReasonIn(Schema):
    reason: str


class NoteIn(Schema):
    note: str


class WithdrawalOut(Schema):
    id: UUID
    reference: str
    client_id: UUID
    amount: int
    currency: str
    status: str
    requested_by: str
    approved_by: str


class ExceptionOut(Schema):
    id: UUID
    kind: str
    reference: str
    detail: str
    status: str
    resolution_note: str
    created_at: datetime


@router.post("/withdrawals/{withdrawal_id}/approve", response=WithdrawalOut, auth=FINANCE)
@domain_errors
def approve(request: HttpRequest, withdrawal_id: UUID, payload: ReasonIn) -> Any:
    """Approve a withdrawal (maker-checker: not the requester)."""
    return services.approve_withdrawal(withdrawal_id, by=request.user, reason=payload.reason)


@router.post("/withdrawals/{withdrawal_id}/reject", response=WithdrawalOut, auth=FINANCE)
@domain_errors
def reject(request: HttpRequest, withdrawal_id: UUID, payload: ReasonIn) -> Any:
    """Reject a withdrawal; the funds go back to the wallet."""
    return services.reject_withdrawal(withdrawal_id, by=request.user, reason=payload.reason)


@router.get("/exceptions", response=list[ExceptionOut], auth=FINANCE)
def exceptions(request: HttpRequest, status: str | None = None) -> Any:
    """The reconciliation exceptions queue."""
    return queries.exceptions(status=status)


@router.post("/exceptions/{exception_id}/resolve", auth=FINANCE)
@domain_errors
def resolve(request: HttpRequest, exception_id: UUID, payload: NoteIn) -> Any:
    """Resolve an exception with a mandatory note."""
    services.resolve_exception(exception_id, by=request.user, note=payload.note)
    return {"status": "resolved"}
