"""The timeline projector: events of other modules about a client become timeline entries.

Any event whose payload names a ``client_id`` is recorded once (keyed by the event id), so
redeliveries and replays are no-ops. The clients and compliance modules write their own
entries in the same transaction as the change, so their streams are not projected here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from brokerdesk.clients import services
from brokerdesk.clients.queries import client_exists, client_for_login
from brokerdesk.core.bus.base import Message
from brokerdesk.core.consumers import consumer
from brokerdesk.core.errors import DomainError

# Not the ledger's stream: its events are about accounts, not clients (the payments, trading,
# partners and bonuses events that moved the money name the client).
PROJECTED_STREAMS = ["payments", "trading", "partners", "bonuses", "propfirm", "support"]


def _summary(message: Message) -> str:
    payload = message.payload
    parts = [message.type]
    if "amount" in payload and "currency" in payload:
        parts.append(f"{payload['amount']} {payload['currency']} (minor units)")
    if "status" in payload:
        parts.append(str(payload["status"]))
    return " - ".join(parts)


@consumer("clients.timeline", streams=PROJECTED_STREAMS, batch_size=500)
def project_timeline(messages: list[Message]) -> None:
    """Add each client-related event to that client's timeline, once."""
    for message in messages:
        client_id = message.payload.get("client_id")
        if not client_id or not client_exists(client_id):
            continue
        occurred = datetime.fromisoformat(message.occurred_at)
        services.record_timeline(
            client_id,
            kind=message.type,
            summary=_summary(message),
            data=message.payload,
            occurred_at=occurred if occurred.tzinfo else occurred.replace(tzinfo=UTC),
            source_event_id=UUID(message.event_id),
        )


@consumer("clients.trading_logins", streams=["trading"], batch_size=200)
def link_opened_accounts(messages: list[Message]) -> None:
    """Link each login the trading module opens for a client (``trading.account_opened``) to
    that client, so the bridge, commissions and the portal can tell whose login it is. A link
    that already exists is left as it is; accounts of unknown clients are skipped."""
    for message in messages:
        if message.type != "trading.account_opened":
            continue
        p = message.payload
        try:
            known = client_exists(p["client_id"])
        except (ValueError, DomainError):
            known = False
        if not known or client_for_login(p["server"], int(p["login"])) is not None:
            continue
        services.link_platform_login(
            p["client_id"],
            platform=p.get("platform", "mt5"),
            server=p["server"],
            login=int(p["login"]),
            currency=p["currency"],
            is_live=bool(p.get("is_live", True)),
            by="system:trading",
            trading_account_id=UUID(p["account_id"]),
        )
