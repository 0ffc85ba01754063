"""The append-only audit log: who or what did what, when, why, with before and after.

The log is ``AUDIT_CHAINS`` (default 16) parallel hash chains; an object's entries always go
to the same chain (CRC32 of its type and id), so its history is in order in one chain. Each
entry hashes the one before it in its chain (SHA-256 over the previous hash and the entry's
canonical fields), so an edited or deleted row breaks that chain; ``verify_chain`` finds the
first break. Appends to one chain are serialised (an advisory lock per chain on PostgreSQL;
SQLite has one writer at a time) — audited commands on different objects do not wait for
each other.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from brokerdesk.core import bulk, clock
from brokerdesk.core.models import AuditEntry

GENESIS_HASH = "0" * 64
_ADVISORY_LOCK_CLASS = 0x61756469  # "audi": first key of the two-key advisory lock


def chains() -> int:
    """How many parallel chains the log has (settings.AUDIT_CHAINS)."""
    return int(getattr(settings, "AUDIT_CHAINS", 16))


def chain_of(object_type: str, object_id: str) -> int:
    """The chain an object's entries go to."""
    return zlib.crc32(f"{object_type}:{object_id}".encode()) % chains()


def _canonical(entry: AuditEntry) -> str:
    return json.dumps(
        {
            "chain": entry.chain,
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
    chain = chain_of(object_type, str(object_id))
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(%s, %s)", [_ADVISORY_LOCK_CLASS, chain]
                )
        last = AuditEntry.objects.filter(chain=chain).order_by("-seq").only("seq", "hash").first()
        entry = AuditEntry(
            chain=chain,
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


def record_many(items: Sequence[Mapping[str, Any]]) -> list[AuditEntry]:
    """Append many entries (each the keyword arguments of ``record``) in the caller's
    transaction: one lock per chain taken in chain order, one read of the chain heads and
    one bulk insert, instead of three statements per entry."""
    if not items:
        return []
    with transaction.atomic():
        wanted = sorted({chain_of(i["object_type"], str(i["object_id"])) for i in items})
        heads: dict[int, tuple[int, str]] = {}
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(%s, c) FROM "
                    "(SELECT unnest(%s::int[]) AS c ORDER BY 1) AS chains",
                    [_ADVISORY_LOCK_CLASS, wanted],
                )
                cursor.execute(  # each chain's head: one backward index probe per chain
                    "SELECT c, a.seq, a.hash FROM unnest(%s::int[]) AS c CROSS JOIN LATERAL "
                    "(SELECT seq, hash FROM core_auditentry WHERE chain = c "
                    "ORDER BY seq DESC LIMIT 1) AS a",
                    [wanted],
                )
                heads = {chain: (seq, h) for chain, seq, h in cursor.fetchall()}
        else:
            for chain in wanted:
                last = AuditEntry.objects.filter(chain=chain).order_by("-seq").first()
                if last is not None:
                    heads[chain] = (last.seq, last.hash)
        entries = []
        now = clock.now()
        for item in items:
            chain = chain_of(item["object_type"], str(item["object_id"]))
            seq, prev = heads.get(chain, (0, GENESIS_HASH))
            entry = AuditEntry(
                chain=chain,
                seq=seq + 1,
                occurred_at=now,
                actor=item["actor"],
                action=item["action"],
                object_type=item["object_type"],
                object_id=str(item["object_id"]),
                reason=item.get("reason", ""),
                before=json.loads(json.dumps(item.get("before") or {}, default=str)),
                after=json.loads(json.dumps(item.get("after") or {}, default=str)),
                prev_hash=prev,
            )
            entry.hash = _hash(prev, entry)
            heads[chain] = (entry.seq, entry.hash)
            entries.append(entry)
        bulk.insert(AuditEntry, entries)
    return entries


@dataclass(frozen=True)
class ChainReport:
    """The result of verifying the audit chains."""

    entries: int
    ok: bool
    first_bad_seq: int | None = None
    problem: str = ""
    chain: int | None = None


def verify_chain(batch_size: int = 5000) -> ChainReport:
    """Recompute every hash of every chain in order; report the first entry that does not match."""
    total = 0
    for chain in AuditEntry.objects.values_list("chain", flat=True).distinct().order_by("chain"):
        report = _verify_one(chain, batch_size)
        total += report.entries
        if not report.ok:
            return ChainReport(total, False, report.first_bad_seq, report.problem, chain)
    return ChainReport(total, True)


def _verify_one(chain: int, batch_size: int) -> ChainReport:
    prev_hash, expected_seq, count = GENESIS_HASH, 1, 0
    entries = AuditEntry.objects.filter(chain=chain).order_by("seq")
    for entry in entries.iterator(chunk_size=batch_size):
        if entry.seq != expected_seq:
            return ChainReport(count, False, expected_seq, "missing entry", chain)
        if entry.prev_hash != prev_hash:
            return ChainReport(count, False, entry.seq, "previous hash does not match", chain)
        if _hash(prev_hash, entry) != entry.hash:
            return ChainReport(count, False, entry.seq, "entry altered", chain)
        prev_hash, expected_seq, count = entry.hash, expected_seq + 1, count + 1
    return ChainReport(count, True, chain=chain)


# -- reading the log (the back office's audit-log viewer) ----------------------------------


@dataclass(frozen=True)
class AuditView:
    """One audit entry as a reader sees it."""

    id: int
    chain: int
    seq: int
    occurred_at: Any
    actor: str
    action: str
    object_type: str
    object_id: str
    reason: str
    before: dict[str, Any]
    after: dict[str, Any]
    hash: str


def entries(
    *,
    actor: str = "",
    action: str = "",
    object_type: str = "",
    object_id: str = "",
    since: Any = None,
    until: Any = None,
    limit: int = 100,
) -> list[AuditView]:
    """Entries matching every given filter, newest first (``action`` matches a prefix,
    ``since``/``until`` bound ``occurred_at`` as [since, until))."""
    qs = AuditEntry.objects.all()
    if actor:
        qs = qs.filter(actor=actor)
    if action:
        qs = qs.filter(action__startswith=action)
    if object_type:
        qs = qs.filter(object_type=object_type)
    if object_id:
        qs = qs.filter(object_id=object_id)
    if since is not None:
        qs = qs.filter(occurred_at__gte=since)
    if until is not None:
        qs = qs.filter(occurred_at__lt=until)
    return [
        AuditView(
            e.pk,
            e.chain,
            e.seq,
            e.occurred_at,
            e.actor,
            e.action,
            e.object_type,
            e.object_id,
            e.reason,
            dict(e.before or {}),
            dict(e.after or {}),
            e.hash,
        )
        for e in qs.order_by("-occurred_at", "-id")[:limit]
    ]
