"""Events the ledger emits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from brokerdesk.core.events import DomainEvent
from brokerdesk.ledger.models import Entry, Transfer


@dataclass(frozen=True)
class TransferPosted(DomainEvent):
    """``ledger.transfer_posted``: a transfer was written (posted, pending or a resolution)."""

    type: ClassVar[str] = "ledger.transfer_posted"
    stream: ClassVar[str] = "ledger"

    transfer_id: str
    idempotency_key: str
    kind: str
    phase: str
    currency: str
    amount: int
    legs: list[dict[str, Any]] = field(default_factory=list)
    pending_id: str | None = None
    reverses_id: str | None = None
    linked_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    actor: str = "system"

    def aggregate_id(self) -> str:
        return self.transfer_id

    @classmethod
    def of(cls, transfer: Transfer, entries: Sequence[Entry]) -> TransferPosted:
        """The event for a transfer and its entries."""
        return cls(
            transfer_id=str(transfer.id),
            idempotency_key=transfer.idempotency_key,
            kind=transfer.kind,
            phase=transfer.phase,
            currency=transfer.currency,
            amount=transfer.amount,
            legs=[
                {"account_id": str(e.account_id), "side": e.side, "amount": e.amount}
                for e in entries
            ],
            pending_id=str(transfer.pending_id) if transfer.pending_id else None,
            reverses_id=str(transfer.reverses_id) if transfer.reverses_id else None,
            linked_id=str(transfer.linked_id) if transfer.linked_id else None,
            metadata=dict(transfer.metadata),
            actor=transfer.actor,
        )
