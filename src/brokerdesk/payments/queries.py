"""Payments read side: deposits, withdrawals, timelines and the exceptions queue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from brokerdesk.core.errors import NotFound
from brokerdesk.payments.models import Deposit, PaymentEvent, ReconciliationException, Withdrawal
from brokerdesk.payments.services import (
    DepositView,
    WithdrawalView,
    deposit_view,
    withdrawal_view,
)


@dataclass(frozen=True)
class TimelineStep:
    """One step of a payment's timeline."""

    from_status: str
    to_status: str
    actor: str
    reason: str
    data: dict[str, Any]
    occurred_at: datetime


@dataclass(frozen=True)
class ExceptionView:
    """One reconciliation exception."""

    id: UUID
    kind: str
    reference: str
    detail: str
    status: str
    resolution_note: str
    created_at: datetime


def get_deposit(deposit_id: UUID | str) -> DepositView:
    """A deposit, or ``NotFound``."""
    d = Deposit.objects.filter(pk=deposit_id).first()
    if d is None:
        raise NotFound("No such deposit.", code="deposit_not_found", field="deposit_id")
    return deposit_view(d)


def get_withdrawal(withdrawal_id: UUID | str) -> WithdrawalView:
    """A withdrawal, or ``NotFound``."""
    w = Withdrawal.objects.filter(pk=withdrawal_id).first()
    if w is None:
        raise NotFound("No such withdrawal.", code="withdrawal_not_found", field="withdrawal_id")
    return withdrawal_view(w)


def deposits_of(client_id: UUID | str, *, limit: int = 100) -> list[DepositView]:
    """A client's deposits, newest first."""
    rows = Deposit.objects.filter(client_id=client_id).order_by("-created_at")[:limit]
    return [deposit_view(d) for d in rows]


def withdrawals_of(client_id: UUID | str, *, limit: int = 100) -> list[WithdrawalView]:
    """A client's withdrawals, newest first."""
    rows = Withdrawal.objects.filter(client_id=client_id).order_by("-created_at")[:limit]
    return [withdrawal_view(w) for w in rows]


def timeline(payment_id: UUID | str) -> list[TimelineStep]:
    """Every step of a deposit's or withdrawal's timeline, oldest first."""
    return [
        TimelineStep(e.from_status, e.to_status, e.actor, e.reason, e.data, e.occurred_at)
        for e in PaymentEvent.objects.filter(payment_id=payment_id).order_by("occurred_at", "id")
    ]


def exceptions(*, status: str | None = None, limit: int = 100) -> list[ExceptionView]:
    """The exceptions queue (oldest first), optionally of one status."""
    rows = ReconciliationException.objects.order_by("created_at", "id")
    if status:
        rows = rows.filter(status=status)
    return [
        ExceptionView(
            r.id, r.kind, r.reference, r.detail, r.status, r.resolution_note, r.created_at
        )
        for r in rows[:limit]
    ]
