"""Event handlers and periodic jobs of support (the worker imports this module).

* ``support.mirror_payments`` reads the ``payments`` stream: every deposit or withdrawal
  event (``deposit.confirmed``, ``withdrawal.approved/paid/rejected/returned``, …) becomes a
  system message on the tickets linked to that payment (by id or reference), once per event
  and ticket, so a redelivery adds nothing.
* ``support.close_resolved`` closes tickets resolved seven days ago (hourly).
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from brokerdesk.core.bus.base import Message
from brokerdesk.core.consumers import consumer
from brokerdesk.core.periodic import periodic
from brokerdesk.support import services

log = structlog.get_logger(__name__)

PAYMENT_PREFIXES = ("deposit.", "withdrawal.")


def _occurred(message: Message) -> datetime:
    try:
        at = datetime.fromisoformat(message.occurred_at)
    except (TypeError, ValueError):
        return datetime.now(UTC)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@consumer("support.mirror_payments", streams=["payments"], batch_size=200)
def mirror_payments(messages: list[Message]) -> None:
    """Mirror payment status changes into the tickets linked to those payments."""
    for message in messages:
        if not message.type.startswith(PAYMENT_PREFIXES):
            continue
        added = services.mirror_payment_status(
            event_id=message.event_id,
            event_type=message.type,
            payload=message.payload,
            occurred_at=_occurred(message),
        )
        if added:
            log.info("support_payment_mirrored", type=message.type, tickets=added)


@periodic("support.close_resolved", every_s=3600)
def close_resolved() -> int:
    """Close tickets that have stayed resolved for seven days."""
    return services.close_resolved()
