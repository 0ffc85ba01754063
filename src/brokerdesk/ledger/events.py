"""Events the ledger emits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from brokerdesk.core.events import DomainEvent


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

    def payload(self) -> dict[str, Any]:
        """The fields as JSON-ready data (built directly: this event is on the hot path)."""
        return {
            "transfer_id": self.transfer_id,
            "idempotency_key": self.idempotency_key,
            "kind": self.kind,
            "phase": self.phase,
            "currency": self.currency,
            "amount": self.amount,
            "legs": self.legs,
            "pending_id": self.pending_id,
            "reverses_id": self.reverses_id,
            "linked_id": self.linked_id,
            "metadata": self.metadata,
            "actor": self.actor,
        }

    @classmethod
    def of(cls, transfer: Any, entries: Sequence[Any]) -> TransferPosted:
        """The event for a transfer row and its entry rows (models or the engine's rows)."""
        return cls(
            transfer_id=str(transfer.id),
            idempotency_key=transfer.idempotency_key,
            kind=transfer.kind,
            phase=str(transfer.phase),
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
