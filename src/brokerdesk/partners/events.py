"""Events the partners module emits (stream ``partners``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from brokerdesk.core.events import DomainEvent


@dataclass(frozen=True)
class CommissionAccrued(DomainEvent):
    """``commission.accrued``: a manual adjustment was written and posted (deal and CPA
    accruals are announced per batch by ``commissions.accrued``)."""

    type: ClassVar[str] = "commission.accrued"
    stream: ClassVar[str] = "partners"

    accrual_id: str
    ib_id: str
    kind: str
    source_key: str
    level: int
    amount: int
    currency: str
    plan_version_id: str | None
    client_id: str | None
    occurred_at: str

    def aggregate_id(self) -> str:
        return self.ib_id

    def payload(self) -> dict[str, Any]:
        """Fields as JSON (built directly: one event per accrual, on the consumer's path)."""
        return {
            "accrual_id": self.accrual_id,
            "ib_id": self.ib_id,
            "kind": self.kind,
            "source_key": self.source_key,
            "level": self.level,
            "amount": self.amount,
            "currency": self.currency,
            "plan_version_id": self.plan_version_id,
            "client_id": self.client_id,
            "occurred_at": self.occurred_at,
        }


@dataclass(frozen=True)
class CommissionsAccrued(DomainEvent):
    """``commissions.accrued``: one accrual batch (deal and CPA accruals) was written and
    posted. It lists the batch's accruals by reference: they are exactly the accruals with an
    id in [``first_id``, ``last_id``] (a batch's ids are consecutive) and a
    ``ledger_transfer_id`` among ``transfers`` (one transfer per currency), read with
    ``partners.queries.batch_accruals`` / ``batch_totals``. One event per batch, not one per
    accrual: a million deals make about five million accruals."""

    type: ClassVar[str] = "commissions.accrued"
    stream: ClassVar[str] = "partners"

    transfers: dict[str, str]  # currency -> ledger transfer id
    first_id: str
    last_id: str
    accruals: int
    deals: int
    amounts: dict[str, int]  # currency -> total accrued

    def aggregate_id(self) -> str:
        return next(iter(self.transfers.values()), "")


@dataclass(frozen=True)
class CommissionPaid(DomainEvent):
    """``commission.paid``: payable accruals of an IB were paid to its wallet."""

    type: ClassVar[str] = "commission.paid"
    stream: ClassVar[str] = "partners"

    payout_id: str
    ib_id: str
    amount: int
    currency: str
    accruals: int
    ledger_transfer_id: str

    def aggregate_id(self) -> str:
        return self.ib_id


@dataclass(frozen=True)
class CommissionCorrected(DomainEvent):
    """``commission.corrected``: a dealer correction of a deal changed what it pays. ``lines``
    per (IB, level, part): ``old`` and ``new`` amounts (the net change is new - old, booked as
    cancellations of unpaid accruals and a ``correction`` accrual); ``day`` is the deal's."""

    type: ClassVar[str] = "commission.corrected"
    stream: ClassVar[str] = "partners"

    deal_key: str
    version_msc: int
    change: str
    currency: str
    day: str
    client_id: str
    lines: list[dict[str, Any]]

    def aggregate_id(self) -> str:
        return self.deal_key
