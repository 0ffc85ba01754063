"""Wire format shared by the network buses: a message as one JSON document, or a packed
list of messages (one stream entry carrying many, see ``RedisStreamsBus(pack=…)``).

orjson on the hot path; the standard library for what orjson refuses (integers beyond
64 bits), so the output parses the same either way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import orjson

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


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: e.g. an integer beyond 64 bits
        return json.dumps(value, separators=(",", ":")).encode()


def _message(doc: dict[str, Any]) -> Message:
    # positional: this runs once per message read (tens of thousands a second)
    return Message(
        doc["event_id"],
        doc["stream"],
        doc["type"],
        doc["payload"],
        doc["occurred_at"],
        int(doc.get("version", 1)),
        doc.get("aggregate_id", ""),
        doc.get("headers") or {},  # a fresh dict from the parser: no copy needed
    )


def _loads(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:  # what the standard library wrote and orjson refuses
        return json.loads(data)


def encode(message: Message) -> bytes:
    """Serialise a message (compact JSON, UTF-8)."""
    return _dumps(message_to_dict(message))


def decode(data: bytes | str) -> Message:
    """Parse a message written by ``encode``."""
    return _message(_loads(data))


def encode_many(messages: Sequence[Message]) -> bytes:
    """Serialise several messages as one JSON array (a packed stream entry)."""
    return _dumps([message_to_dict(m) for m in messages])


def decode_many(data: bytes | str) -> list[Message]:
    """Parse what ``encode_many`` wrote, in order."""
    return [_message(doc) for doc in _loads(data)]
