"""Events the partners module emits (stream ``partners``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from brokerdesk.core.events import DomainEvent


@dataclass(frozen=True)
class CommissionAccrued(DomainEvent):
    """``commission.accrued``: an accrual (deal, CPA or adjustment) was written and posted."""

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
