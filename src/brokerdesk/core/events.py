"""Domain events: typed, versioned, and written to the outbox with ``emit``."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from brokerdesk.core import bulk, clock
from brokerdesk.core.ids import new_id
from brokerdesk.core.models import OutboxEvent


@dataclasses.dataclass(frozen=True)
class DomainEvent:
    """Base class: subclasses set ``type`` (``module.thing_happened``), ``stream`` and fields."""

    type: ClassVar[str] = "event"
    stream: ClassVar[str] = "events"
    version: ClassVar[int] = 1

    def aggregate_id(self) -> str:
        """The id of the thing this event is about (used to order and partition)."""
        return ""

    def payload(self) -> dict[str, Any]:
        """The event's fields as JSON-ready data."""
        return {k: _jsonable(v) for k, v in dataclasses.asdict(self).items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


@dataclasses.dataclass(slots=True)
class OutboxRow:
    """An outbox row about to be bulk-written (columns not named take the model's default)."""

    id: UUID
    stream: str
    type: str
    version: int
    aggregate_id: str
    payload: dict[str, Any]
    occurred_at: datetime


def outbox_row(event: DomainEvent, *, occurred_at: datetime | None = None) -> OutboxRow:
    """The outbox row for ``event``, for fast bulk inserts (``occurred_at``: now by default)."""
    return OutboxRow(
        id=new_id(),
        stream=event.stream,
        type=event.type,
        version=event.version,
        aggregate_id=event.aggregate_id(),
        payload=event.payload(),
        occurred_at=occurred_at or clock.now(),
    )


def emit(*events: DomainEvent) -> None:
    """Write events to the outbox; call inside the transaction that made the change."""
    emit_many(events)


def emit_many(events: Iterable[DomainEvent]) -> None:
    """Write many events to the outbox in one bulk insert (COPY on PostgreSQL)."""
    bulk.insert(OutboxEvent, [outbox_row(e) for e in events])
