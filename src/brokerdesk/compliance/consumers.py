"""Events compliance reacts to: screen new clients, monitor payments, re-screen on new lists.

Payments' events are expected to carry ``client_id``, ``amount`` (minor units), ``currency``
and, when known, ``method_fingerprint`` and ``payer_name``; the event id keys the
monitored transaction, so a redelivery is a no-op.
"""

from __future__ import annotations

from datetime import UTC, datetime

from brokerdesk.compliance import services
from brokerdesk.core.bus.base import Message
from brokerdesk.core.consumers import consumer

_PAYMENT_KINDS = {"deposit.confirmed": "deposit", "withdrawal.requested": "withdrawal"}


@consumer("compliance.screen_new_clients", streams=["clients"], batch_size=100)
def screen_new_clients(messages: list[Message]) -> None:
    """Screen each newly registered client (onboarding screening)."""
    for message in messages:
        if message.type == "client.registered":
            services.screen_client(message.payload["client_id"])


@consumer("compliance.monitor_payments", streams=["payments"], batch_size=200)
def monitor_payments(messages: list[Message]) -> None:
    """Feed deposits and withdrawals to the AML monitoring rules."""
    for message in messages:
        kind = _PAYMENT_KINDS.get(message.type)
        payload = message.payload
        if kind is None or "client_id" not in payload:
            continue
        occurred = datetime.fromisoformat(message.occurred_at)
        services.record_transaction(
            message.event_id,
            client_id=payload["client_id"],
            kind=kind,
            amount=int(payload["amount"]),
            currency=str(payload["currency"]),
            occurred_at=occurred if occurred.tzinfo else occurred.replace(tzinfo=UTC),
            method_fingerprint=str(payload.get("method_fingerprint", "")),
            payer_name=str(payload.get("payer_name", "")),
        )
