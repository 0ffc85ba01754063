"""Reconciliation of a PSP settlement file (CSV) against our payments and the ledger.

Each settlement row is matched by reference to a deposit or withdrawal and then to the
ledger posting on the provider's clearing account (by its idempotency key, which carries the
reference): amount, currency and fee arithmetic must agree. What does not match becomes an
exception in the queue (``ReconciliationException``: new → in_review → resolved with a
mandatory note). Confirmed payments that the PSP should have settled by the file's date (less
a grace period for T+1/T+2) but did not are ``missing_at_psp``.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.db import transaction

from brokerdesk.core import audit, clock
from brokerdesk.core.errors import ValidationError
from brokerdesk.ledger import queries as ledger_queries
from brokerdesk.payments.models import (
    Deposit,
    ReconciliationException,
    ReconciliationRun,
    Withdrawal,
)
from brokerdesk.payments.services import clearing_account
from brokerdesk.staff.roles import actor_label

REQUIRED_COLUMNS = ("row_type", "psp_id", "reference", "currency", "gross", "fee", "net")

# row type → (payment kind, statuses it may be in, ledger key suffix, clearing side, net sign)
_ROW_RULES: dict[str, tuple[str, frozenset[str], str, str, int]] = {
    "payment": ("deposit", frozenset({"confirmed", "held", "reversed"}), "credit", "debit", 1),
    "chargeback": ("deposit", frozenset({"reversed"}), "reverse:credit", "credit", -1),
    "payout": ("withdrawal", frozenset({"paid", "returned"}), "paid", "credit", -1),
    "payout_return": ("withdrawal", frozenset({"returned"}), "return", "debit", 1),
}


@dataclass(frozen=True)
class ReconciliationReport:
    """What one run found."""

    run_id: Any
    rows: int
    matched: int
    exceptions: list[dict[str, str]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """True when every row matched and nothing is missing."""
        return not self.exceptions


def reconcile_settlement(
    text: str,
    *,
    provider: str,
    source: str,
    by: Any = "system:reconciliation",
    missing_grace: timedelta = timedelta(days=2),
) -> ReconciliationReport:
    """Match a settlement file's rows to the ledger; open an exception for each mismatch."""
    actor = actor_label(by)
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValidationError(
            f"The settlement file lacks the columns {', '.join(missing)}.",
            code="bad_settlement_file",
            field="file",
        )
    rows = list(reader)
    found: list[dict[str, str]] = []
    matched = 0
    now = clock.now()
    with transaction.atomic():
        run = ReconciliationRun.objects.create(
            provider=provider,
            source=source[:300],
            file_sha256=hashlib.sha256(text.encode()).hexdigest(),
            rows=len(rows),
            started_at=now,
            actor=actor,
        )
        payments = _payments(provider, rows)
        postings = _clearing_postings(provider, payments)
        seen: set[tuple[str, str]] = set()
        settled: dict[tuple[str, str], list[str]] = {}  # (kind, batch) → references
        stamps: set[str] = set()
        for number, row in enumerate(rows, start=2):  # line 1 is the header
            problem = _check_row(row, number, seen, payments, postings)
            if problem is None:
                matched += 1
                kind = _ROW_RULES[row["row_type"]][0]
                if not payments[(kind, row["reference"])].settlement_batch:
                    batch = row.get("batch_id", "")[:64] or str(run.id)
                    settled.setdefault((kind, batch), []).append(row["reference"])
            else:
                found.append(problem)
            stamps.add(row.get("settled_at") or "")
        _mark_settled(provider, settled)
        latest = max(filter(None, map(_parse_time, stamps)), default=None)
        if latest is not None:
            in_file = {row.get("reference", "") for row in rows}
            found.extend(_missing_at_psp(provider, latest - missing_grace, in_file))
        for problem in found:
            ReconciliationException.objects.create(
                run=run,
                kind=problem["kind"],
                reference=problem["reference"][:64],
                detail=problem["detail"][:500],
                data={"line": problem.get("line", "")},
                created_at=now,
                updated_at=now,
            )
        run.matched = matched
        run.exceptions = len(found)
        run.finished_at = clock.now()
        run.save()
        audit.record(
            actor=actor,
            action="payments.reconciliation.run",
            object_type="reconciliation_run",
            object_id=str(run.id),
            reason=source,
            after={"rows": len(rows), "matched": matched, "exceptions": len(found)},
        )
    return ReconciliationReport(run.id, len(rows), matched, found)


def reconcile_directory(
    directory: Path, *, provider: str, by: Any = "system:reconciliation"
) -> list[ReconciliationReport]:
    """Reconcile every ``*.csv`` settlement file in ``directory`` not reconciled before
    (a file is known by its SHA-256, so a rerun skips it)."""
    reports = []
    for path in sorted(Path(directory).glob("*.csv")):
        text = path.read_text(encoding="utf-8")
        digest = hashlib.sha256(text.encode()).hexdigest()
        if ReconciliationRun.objects.filter(provider=provider, file_sha256=digest).exists():
            continue
        reports.append(reconcile_settlement(text, provider=provider, source=str(path), by=by))
    return reports


def _mark_settled(provider: str, settled: dict[tuple[str, str], list[str]]) -> None:
    """Record the settlement batch on matched payments, in chunks."""
    for (kind, batch), references in settled.items():
        model = Deposit if kind == "deposit" else Withdrawal
        for i in range(0, len(references), 5_000):
            model.objects.filter(provider=provider, reference__in=references[i : i + 5_000]).update(
                settlement_batch=batch
            )


def _payments(provider: str, rows: list[dict[str, str]]) -> dict[tuple[str, str], Any]:
    refs = sorted({r.get("reference", "") for r in rows})
    out: dict[tuple[str, str], Any] = {}
    fields = ("reference", "amount", "currency", "status", "settlement_batch", "created_at")
    for i in range(0, len(refs), 5_000):
        chunk = refs[i : i + 5_000]
        for d in Deposit.objects.filter(provider=provider, reference__in=chunk).only(*fields):
            out[("deposit", d.reference)] = d
        for w in Withdrawal.objects.filter(provider=provider, reference__in=chunk).only(*fields):
            out[("withdrawal", w.reference)] = w
    return out


def _clearing_postings(
    provider: str, payments: dict[tuple[str, str], Any]
) -> dict[str, tuple[int, int]]:
    """Ledger lines of the provider's clearing accounts: idempotency key → (debit, credit)."""
    postings: dict[str, tuple[int, int]] = {}
    by_currency: dict[str, datetime] = {}
    for p in payments.values():
        start = by_currency.get(p.currency)
        by_currency[p.currency] = p.created_at if start is None else min(start, p.created_at)
    end = clock.now() + timedelta(seconds=1)
    for currency, start in by_currency.items():
        account_id = clearing_account(provider, currency)
        for line in ledger_queries.statement(account_id, start, end).lines:
            postings[line.reference] = (line.debit, line.credit)
    return postings


def _check_row(
    row: dict[str, str],
    line: int,
    seen: set[tuple[str, str]],
    payments: dict[tuple[str, str], Any],
    postings: dict[str, tuple[int, int]],
) -> dict[str, str] | None:
    reference = row.get("reference", "")

    def problem(kind: str, detail: str) -> dict[str, str]:
        return {"kind": kind, "reference": reference, "detail": detail, "line": str(line)}

    rule = _ROW_RULES.get(row.get("row_type", ""))
    if rule is None:
        return problem("malformed_row", f"Line {line}: unknown row type {row.get('row_type')!r}.")
    try:
        gross, fee, net = int(row["gross"]), int(row["fee"]), int(row["net"])
    except (TypeError, ValueError):
        return problem("malformed_row", f"Line {line}: gross, fee and net must be integers.")
    kind, statuses, suffix, side, sign = rule
    if (row["row_type"], reference) in seen:
        return problem("duplicate_row", f"Line {line}: {reference} is settled twice in the file.")
    seen.add((row["row_type"], reference))
    payment = payments.get((kind, reference))
    if payment is None:
        return problem("missing_in_ledger", f"Line {line}: no {kind} with reference {reference}.")
    if row["currency"] != payment.currency:
        return problem(
            "currency_mismatch",
            f"Line {line}: settled in {row['currency']}, the {kind} is in {payment.currency}.",
        )
    if gross != payment.amount:
        return problem(
            "amount_mismatch",
            f"Line {line}: settled gross {gross}, the {kind} is {payment.amount} "
            f"{payment.currency}.",
        )
    if net != sign * gross - fee:
        return problem(
            "fee_mismatch", f"Line {line}: net {net} is not {sign} * gross {gross} - fee {fee}."
        )
    if payment.status not in statuses:
        return problem(
            "status_mismatch",
            f"Line {line}: the PSP settled a {row['row_type']} but the {kind} is {payment.status}.",
        )
    key = f"{kind}:{reference}:{suffix}"
    debit, credit = postings.get(key, (0, 0))
    posted = debit if side == "debit" else credit
    if posted != gross:
        return problem(
            "missing_in_ledger" if posted == 0 else "amount_mismatch",
            f"Line {line}: the ledger's clearing posting {key} is {posted}; "
            f"the PSP settled {gross}.",
        )
    return None


def _missing_at_psp(provider: str, cutoff: datetime, in_file: set[str]) -> list[dict[str, str]]:
    """Confirmed deposits up to ``cutoff`` in no settlement so far (rows in this file count,
    matched or not: a mismatched row is already an exception of its own)."""
    found = []
    for d in Deposit.objects.filter(
        provider=provider,
        status__in=("confirmed", "held"),
        settlement_batch="",
        confirmed_at__lte=cutoff,
    ).order_by("confirmed_at"):
        if d.reference in in_file:
            continue
        found.append(
            {
                "kind": "missing_at_psp",
                "reference": d.reference,
                "detail": f"Deposit {d.reference} ({d.amount} {d.currency}) confirmed "
                f"{d.confirmed_at:%Y-%m-%d %H:%M} is not in any settlement.",
            }
        )
    return found


def _parse_time(text: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
