"""Event handlers of notifications (the worker imports this module).

``notifications.from_events`` turns events into notifications, one per (event, recipient):

* ``deposit.confirmed`` → deposit received; ``withdrawal.approved`` → withdrawal approved;
* ``compliance.document_reviewed`` with status rejected → document rejected, with its note;
* ``bonus.granted`` / ``bonus.forfeited`` → bonus granted / removed (with the reason);
* ``commission.paid`` → commission paid, to the IB's portal login;
* ``challenge.passed`` / ``challenge.failed`` → challenge passed / breached;
* ``ticket.updated`` with a staff reply the client may see → support replied.

An event about someone we cannot reach (no client record, an IB without a login) is skipped.
The job ``notifications.send_emails`` sends e-mails left queued (the SMTP server was down).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import structlog

from brokerdesk.core.bus.base import Message
from brokerdesk.core.consumers import consumer
from brokerdesk.core.errors import NotFound
from brokerdesk.core.periodic import periodic
from brokerdesk.notifications import services

log = structlog.get_logger(__name__)

CLIENT_EVENTS: dict[str, str] = {
    "deposit.confirmed": "deposit_received",
    "withdrawal.approved": "withdrawal_approved",
    "bonus.granted": "bonus_granted",
    "bonus.forfeited": "bonus_removed",
    "challenge.passed": "challenge_passed",
    "challenge.failed": "challenge_failed",
}


def kind_of(message: Message) -> str | None:
    """The notification kind an event becomes (None: not one we notify about)."""
    if message.type == "compliance.document_reviewed":
        return "document_rejected" if message.payload.get("status") == "rejected" else None
    if message.type == "commission.paid":
        return "commission_paid"
    if message.type == "ticket.updated":
        p = message.payload
        replied = p.get("change") == "staff_reply" and p.get("visible_to_client")
        return "ticket_replied" if replied else None
    return CLIENT_EVENTS.get(message.type)


def _ib_user(ib_id: str) -> int | None:
    from brokerdesk.partners.hierarchy import get_ib

    try:
        return get_ib(ib_id).user_id
    except (NotFound, ValueError):
        return None


def handle(message: Message) -> bool:
    """Notify about one event; True when someone was notified."""
    kind = kind_of(message)
    if kind is None:
        return False
    context: dict[str, Any] = {**message.payload, "occurred_at": message.occurred_at}
    if kind == "commission_paid":
        user_id = _ib_user(str(message.payload.get("ib_id") or ""))
        if user_id is None:
            return False
        services.notify(
            user_id=user_id,
            kind=kind,
            context=context,
            idempotency_key=f"{message.event_id}:user:{user_id}",
        )
        return True
    client_id = message.payload.get("client_id")
    if not client_id:
        return False
    try:
        services.notify(
            client_id=UUID(str(client_id)),
            kind=kind,
            context=context,
            idempotency_key=f"{message.event_id}:client:{client_id}",
        )
    except NotFound:
        log.info("notification_recipient_unknown", event_id=message.event_id, kind=kind)
        return False
    return True


@consumer(
    "notifications.from_events",
    streams=["payments", "compliance", "partners", "bonuses", "propfirm", "support"],
    batch_size=200,
    keyed_writes=True,  # notify() is unique per idempotency key: a redelivery is a no-op
)
def from_events(messages: list[Message]) -> None:
    """Notify about each event of the batch that concerns a client or an IB."""
    for message in messages:
        handle(message)


@periodic("notifications.send_emails", every_s=30)
def send_emails() -> int:
    """Send the e-mails still queued."""
    return services.send_pending()
