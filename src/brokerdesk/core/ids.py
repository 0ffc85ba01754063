"""Identifiers: UUIDv7, time-ordered so that new rows land at the end of an index."""

from __future__ import annotations

import uuid

import uuid6


def new_id() -> uuid.UUID:
    """Return a new UUIDv7 as a standard :class:`uuid.UUID`."""
    return uuid.UUID(int=uuid6.uuid7().int)
