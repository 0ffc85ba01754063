"""The bus port: publish messages to named streams; read them in consumer groups; ack.

Delivery is at least once. A message carries the outbox event id, so a consumer that records
the ids it processed turns redelivery into a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Message:
    """One event on a stream."""

    event_id: str
    stream: str
    type: str
    payload: dict[str, Any]
    occurred_at: str  # ISO 8601
    version: int = 1
    aggregate_id: str = ""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
    """A message handed to a consumer, with the bus's own id for acknowledging it."""

    message: Message
    delivery_id: str
    attempts: int = 1


@dataclass(frozen=True)
class StreamDepth:
    """How much of a stream a consumer group still has to do."""

    stream: str
    group: str
    length: int  # messages held on the stream
    undelivered: int  # never handed to the group yet
    pending: int  # handed out and not acknowledged


class Bus(Protocol):
    """What every bus adapter provides."""

    def publish(self, messages: list[Message]) -> None:
        """Append messages to their streams (durably, before returning)."""
        ...

    def read(
        self, stream: str, group: str, consumer: str, count: int, block_ms: int
    ) -> list[Delivery]:
        """Up to ``count`` messages for this group, waiting at most ``block_ms`` for the first."""
        ...

    def ack(self, stream: str, group: str, deliveries: list[Delivery]) -> None:
        """Mark deliveries done for this group."""
        ...

    def depth(self, stream: str, group: str) -> StreamDepth:
        """Backlog of ``group`` on ``stream`` (for lag metrics and ``bus-depth``)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
