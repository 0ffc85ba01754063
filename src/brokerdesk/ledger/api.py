"""The ledger's API: balances, statements, and posting transfers with an idempotency key.

Staff only (an authenticated staff session); the finance role checks come with RBAC.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from django.http import HttpRequest
from ninja import Field, Header, Router, Schema, Status
from ninja.security import SessionAuth

from brokerdesk.core.errors import PermissionDenied
from brokerdesk.ledger import queries, services


class StaffSession(SessionAuth):
    """A logged-in staff user."""

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        user = super().authenticate(request, key)
        if user is None:
            return None
        if not user.is_staff:
            raise PermissionDenied("Staff only.", field="user")
        return user


router = Router(tags=["ledger"], auth=StaffSession())


class BalanceOut(Schema):
    account_id: UUID
    owner_type: str
    owner_id: str
    currency: str
    bucket: str
    posted: int = Field(description="Credits minus debits, minor units")
    pending_in: int
    pending_out: int
    available: int


class LegIn(Schema):
    account_id: UUID
    side: Literal["D", "C"]
    amount: int = Field(gt=0, description="Minor units")


class TransferIn(Schema):
    kind: str = Field(min_length=1, max_length=50)
    currency: str = Field(min_length=3, max_length=12)
    legs: list[LegIn] = Field(min_length=2)
    pending: bool = False
    timeout_s: int | None = Field(default=None, gt=0)
    metadata: dict[str, Any] = Field(default_factory=dict)
    reason: str = ""


class TransferOut(Schema):
    transfer_id: UUID
    idempotency_key: str
    kind: str
    phase: str
    currency: str
    amount: int
    created_at: datetime
    replayed: bool
    linked_id: UUID | None = None


class ResolveIn(Schema):
    amount: int | None = Field(default=None, gt=0)
    reason: str = ""


class ReverseIn(Schema):
    reason: str = Field(min_length=1)


class StatementLineOut(Schema):
    at: datetime
    transfer_id: UUID
    kind: str
    reference: str
    debit: int
    credit: int
    balance: int


class StatementOut(Schema):
    account_id: UUID
    currency: str
    start: datetime
    end: datetime
    opening: int
    closing: int
    lines: list[StatementLineOut]


class ErrorOut(Schema):
    code: str
    message: str
    field: str | None = None


def _actor(request: HttpRequest) -> str:
    return f"user:{request.user.pk}"


@router.get("/accounts/{account_id}", response={200: BalanceOut, 404: ErrorOut})
def get_balance(request: HttpRequest, account_id: UUID) -> queries.Balance:
    """One account's posted, pending and available balance."""
    return queries.balance(account_id)


@router.get("/accounts", response=list[BalanceOut])
def list_balances(request: HttpRequest, owner_type: str, owner_id: str) -> list[queries.Balance]:
    """Every balance of one owner."""
    return queries.balances_of(owner_type, owner_id)


@router.get("/accounts/{account_id}/statement", response={200: StatementOut, 404: ErrorOut})
def get_statement(
    request: HttpRequest, account_id: UUID, start: datetime, end: datetime
) -> queries.Statement:
    """Posted movements in [start, end) with opening, running and closing balances."""
    return queries.statement(account_id, start, end)


@router.post(
    "/transfers",
    response={201: TransferOut, 200: TransferOut, 400: ErrorOut, 404: ErrorOut, 409: ErrorOut},
)
def post_transfer(
    request: HttpRequest,
    body: TransferIn,
    idempotency_key: str = Header(..., alias="Idempotency-Key", min_length=1, max_length=200),
) -> Status[services.TransferResult]:
    """Post a transfer (or reserve it with ``pending``). A repeat with the same key answers 200."""
    result = services.post_transfer(
        services.TransferRequest(
            idempotency_key=idempotency_key,
            kind=body.kind,
            currency=body.currency,
            legs=tuple(services.Leg(leg.account_id, leg.side, leg.amount) for leg in body.legs),
            pending=body.pending,
            timeout=timedelta(seconds=body.timeout_s) if body.timeout_s else None,
            metadata=body.metadata,
            actor=_actor(request),
            reason=body.reason,
        )
    )
    return Status(200 if result.replayed else 201, result)


@router.post(
    "/transfers/{transfer_id}/post",
    response={201: TransferOut, 200: TransferOut, 400: ErrorOut, 404: ErrorOut, 409: ErrorOut},
)
def post_pending(
    request: HttpRequest,
    transfer_id: UUID,
    body: ResolveIn,
    idempotency_key: str = Header(..., alias="Idempotency-Key", min_length=1, max_length=200),
) -> Status[services.TransferResult]:
    """Post a pending transfer, in full or for a smaller amount."""
    result = services.post_pending(
        transfer_id, idempotency_key, amount=body.amount, actor=_actor(request), reason=body.reason
    )
    return Status(200 if result.replayed else 201, result)


@router.post(
    "/transfers/{transfer_id}/void",
    response={201: TransferOut, 200: TransferOut, 404: ErrorOut, 409: ErrorOut},
)
def void_pending(
    request: HttpRequest,
    transfer_id: UUID,
    body: ResolveIn,
    idempotency_key: str = Header(..., alias="Idempotency-Key", min_length=1, max_length=200),
) -> Status[services.TransferResult]:
    """Void a pending transfer and release what it reserved."""
    result = services.void_pending(
        transfer_id, idempotency_key, actor=_actor(request), reason=body.reason
    )
    return Status(200 if result.replayed else 201, result)


@router.post(
    "/transfers/{transfer_id}/reverse",
    response={201: TransferOut, 200: TransferOut, 400: ErrorOut, 404: ErrorOut, 409: ErrorOut},
)
def reverse(
    request: HttpRequest,
    transfer_id: UUID,
    body: ReverseIn,
    idempotency_key: str = Header(..., alias="Idempotency-Key", min_length=1, max_length=200),
) -> Status[services.TransferResult]:
    """Compensate a posted transfer with a linked reversal (audited, reason required)."""
    result = services.reverse(
        transfer_id, idempotency_key, reason=body.reason, actor=_actor(request)
    )
    return Status(200 if result.replayed else 201, result)
