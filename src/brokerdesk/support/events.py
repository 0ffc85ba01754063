"""Events support emits (stream ``support``); the client timeline projects them.

Payloads never carry internal notes or tags. ``visible_to_client`` tells a consumer (the
notifications module) whether the client should hear about the change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar
from uuid import UUID

from brokerdesk.core.events import DomainEvent


@dataclass(frozen=True)
class _TicketEvent(DomainEvent):
    stream: ClassVar[str] = "support"

    ticket_id: UUID
    reference: str
    client_id: UUID | None
    category: str
    queue: str
    priority: str
    status: str

    def aggregate_id(self) -> str:
        """The ticket: its events stay in order."""
        return str(self.ticket_id)


@dataclass(frozen=True)
class TicketOpened(_TicketEvent):
    """A ticket was opened (v1)."""

    type: ClassVar[str] = "ticket.opened"
    subject: str = ""
    source: str = ""


@dataclass(frozen=True)
class TicketUpdated(_TicketEvent):
    """A ticket changed (v1): ``change`` is status, client_reply, staff_reply, escalated,
    assigned, priority or payment_status; ``actor`` who did it."""

    type: ClassVar[str] = "ticket.updated"
    change: str = ""
    visible_to_client: bool = False
    actor: str = ""
