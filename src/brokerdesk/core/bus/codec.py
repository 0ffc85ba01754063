"""Wire format shared by the network buses: a message as one JSON document."""

from __future__ import annotations

import json
from typing import Any

from brokerdesk.core.bus.base import Message


def message_to_dict(message: Message) -> dict[str, Any]:
    """The message as JSON-ready data."""
    return {
        "event_id": message.event_id,
        "stream": message.stream,
        "type": message.type,
        "version": message.version,
        "aggregate_id": message.aggregate_id,
        "occurred_at": message.occurred_at,
        "payload": message.payload,
        "headers": message.headers,
    }


def encode(message: Message) -> bytes:
    """Serialise a message (compact JSON, UTF-8)."""
    return json.dumps(message_to_dict(message), separators=(",", ":")).encode()


def decode(data: bytes | str) -> Message:
    """Parse a message written by ``encode``."""
    doc = json.loads(data)
    return Message(
        event_id=doc["event_id"],
        stream=doc["stream"],
        type=doc["type"],
        payload=doc["payload"],
        occurred_at=doc["occurred_at"],
        version=int(doc.get("version", 1)),
        aggregate_id=doc.get("aggregate_id", ""),
        headers=dict(doc.get("headers") or {}),
    )
