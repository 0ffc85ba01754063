"""The append-only audit log: who or what did what, when, why, with before and after.

Each entry hashes the one before it (SHA-256 over the previous hash and the entry's canonical
fields), so an edited or deleted row breaks the chain; ``verify_chain`` finds the first break.
Appends are serialised (an advisory lock on PostgreSQL; SQLite has one writer at a time).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction

from brokerdesk.core import clock
from brokerdesk.core.models import AuditEntry

GENESIS_HASH = "0" * 64
_ADVISORY_LOCK_KEY = 0x6175646974  # "audit"


def _canonical(entry: AuditEntry) -> str:
    return json.dumps(
        {
            "seq": entry.seq,
            "occurred_at": entry.occurred_at.isoformat(),
            "actor": entry.actor,
            "action": entry.action,
            "object_type": entry.object_type,
            "object_id": entry.object_id,
            "reason": entry.reason,
            "before": entry.before,
            "after": entry.after,
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )


def _hash(prev_hash: str, entry: AuditEntry) -> str:
    return hashlib.sha256((prev_hash + _canonical(entry)).encode()).hexdigest()


def record(
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    reason: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one audit entry in the caller's transaction (or its own)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_ADVISORY_LOCK_KEY])
        last = AuditEntry.objects.order_by("-seq").only("seq", "hash").first()
        entry = AuditEntry(
            seq=(last.seq + 1) if last else 1,
            occurred_at=clock.now(),
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=str(object_id),
            reason=reason,
            before=json.loads(json.dumps(before or {}, default=str)),
            after=json.loads(json.dumps(after or {}, default=str)),
            prev_hash=last.hash if last else GENESIS_HASH,
        )
        entry.hash = _hash(entry.prev_hash, entry)
        entry.save(force_insert=True)
        return entry


@dataclass(frozen=True)
class ChainReport:
    """The result of verifying the audit chain."""

    entries: int
    ok: bool
    first_bad_seq: int | None = None
    problem: str = ""


def verify_chain(batch_size: int = 5000) -> ChainReport:
    """Recompute every hash in order; report the first entry that does not match."""
    prev_hash, expected_seq, count = GENESIS_HASH, 1, 0
    for entry in AuditEntry.objects.order_by("seq").iterator(chunk_size=batch_size):
        if entry.seq != expected_seq:
            return ChainReport(count, False, expected_seq, "missing entry")
        if entry.prev_hash != prev_hash:
            return ChainReport(count, False, entry.seq, "previous hash does not match")
        if _hash(prev_hash, entry) != entry.hash:
            return ChainReport(count, False, entry.seq, "entry altered")
        prev_hash, expected_seq, count = entry.hash, expected_seq + 1, count + 1
    return ChainReport(count, True)
