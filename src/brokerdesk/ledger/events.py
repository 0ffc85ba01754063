"""Events the ledger emits."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from brokerdesk.core.events import DomainEvent

TRANSFER_FIELDS = (
    "id",
    "idempotency_key",
    "kind",
    "phase",
    "currency",
    "amount",
    "linked_id",
    "pending_id",
    "reverses_id",
    "actor",
)
# An entry names its transfer by position in ``transfers`` (shorter than repeating its id).
ENTRY_FIELDS = ("transfer", "account_id", "side", "amount", "is_pending")
_transfer_row = operator.attrgetter(*TRANSFER_FIELDS)


def _id_text(transfer: Any) -> str:
    """The transfer's id as text (the engine's rows carry it already, as ``id_text``)."""
    return getattr(transfer, "id_text", "") or str(transfer.id)


_entry_values = operator.attrgetter("transfer_id", *ENTRY_FIELDS[1:])


@dataclass(frozen=True)
class TransfersPosted(DomainEvent):
    """``ledger.transfers_posted``: transfers written in one transaction (posted, pending or
    resolutions), one event per written chunk of a batch rather than one per transfer.

    The payload is columnar to stay cheap at thousands of transfers a second: ``transfers``
    and ``entries`` are rows whose columns ``transfer_fields`` and ``entry_fields`` name;
    ``metadata`` maps a transfer id to its metadata where it has any. ``rows`` turns a payload
    back into one dict per transfer with its legs.
    """

    type: ClassVar[str] = "ledger.transfers_posted"
    stream: ClassVar[str] = "ledger"

    first_transfer_id: str
    transfers: list[tuple[Any, ...]] = field(default_factory=list)
    entries: list[tuple[Any, ...]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def aggregate_id(self) -> str:
        return self.first_transfer_id

    def payload(self) -> dict[str, Any]:
        """Columnar rows (ids and times are left to the JSON writer, which writes them as
        text in C: this event is on the ledger's hot path)."""
        return {
            "transfer_fields": TRANSFER_FIELDS,
            "transfers": self.transfers,
            "entry_fields": ENTRY_FIELDS,
            "entries": self.entries,
            "metadata": self.metadata,
        }

    @classmethod
    def of(cls, transfers: Sequence[Any], entries: Sequence[Any]) -> TransfersPosted:
        """The event for transfer rows and their entry rows (models or the engine's rows)."""
        position = {t.id.int: i for i, t in enumerate(transfers)}  # int keys: hashed in C
        rows = []
        for values in map(_entry_values, entries):
            rows.append((position[values[0].int], *values[1:]))
        return cls(
            first_transfer_id=str(transfers[0].id),
            transfers=list(map(_transfer_row, transfers)),
            entries=rows,
            metadata={_id_text(t): t.metadata for t in transfers if t.metadata},
        )

    @staticmethod
    def rows(payload: dict[str, Any]) -> list[dict[str, Any]]:
        """One dict per transfer (``legs``: its entries; ``metadata``) from a payload."""
        result = []
        for values in payload["transfers"]:
            transfer = dict(zip(payload["transfer_fields"], values, strict=True))
            transfer["legs"] = []
            transfer["metadata"] = payload["metadata"].get(str(transfer["id"]), {})
            result.append(transfer)
        for values in payload["entries"]:
            entry = dict(zip(payload["entry_fields"], values, strict=True))
            result[entry.pop("transfer")]["legs"].append(entry)
        return result
