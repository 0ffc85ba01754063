"""Reconciliation of a PSP settlement file (CSV) against our payments and the ledger.

Each settlement row is matched by reference to a deposit or withdrawal and then to the
ledger posting on the provider's clearing account (by its idempotency key, which carries the
reference): currency, fee arithmetic (``net = ±gross - fee - reserve``), the PSP's expected
fee, status and the posted amount must agree. A payment may be settled by several rows, in
one file or across files: its rows are counted (``SettlementLine``, once per row) until they
sum to its amount within the PSP's amount tolerance; beyond it the row is over-settled. A
row settled outside the PSP's T+N window is a ``timing_mismatch`` (it still counts). The
reserve the PSP withholds (the file's ``reserve`` column, or its configured rate) is held
per PSP until a ``reserve_release`` row releases it. What does not match becomes an
exception in the queue (``ReconciliationException``: new → in_review → resolved with a
mandatory note); so do confirmed deposits the PSP should have settled by the file's date
(less a grace period) but did not (``missing_at_psp``), partial settlements still short past
the window, and reserves not released by their due date (``reserve_overdue``). A complete
payment is recorded once as settled (``Settlement``). The counted rows are booked per
settlement batch: the PSP's clearing account is relieved of the gross, the bank receives the
net, the fees go to ``psp_fee_expense`` and the reserve to the PSP's reserve account. On
PostgreSQL the same checks run set-based (``reconciliation_sql``); this row loop is the
SQLite path.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from django.db import connection, transaction
from django.db.models import Max, Min, Q, Sum

from brokerdesk.core import audit, clock
from brokerdesk.core.errors import ValidationError
from brokerdesk.ledger import queries as ledger_queries
from brokerdesk.ledger import services as ledger
from brokerdesk.payments.models import (
    Deposit,
    ReconciliationException,
    ReconciliationRun,
    Settlement,
    SettlementLine,
    Withdrawal,
)
from brokerdesk.payments.services import SettlementTerms, clearing_account, settlement_terms
from brokerdesk.staff.roles import actor_label

REQUIRED_COLUMNS = ("row_type", "psp_id", "reference", "currency", "gross", "fee", "net")
RELEASE = "reserve_release"
SETTLING = ("payment", "chargeback", "payout", "payout_return")  # not releases
DEPOSIT_ROWS = ("payment", "chargeback", RELEASE)
TIMED = frozenset({"payment", "payout"})  # row types the T+N window applies to
_LIMIT = 2**63 // 4  # larger figures are malformed (they could overflow a sum)

# row type → (payment kind, statuses it may be in, ledger key suffix, clearing side, net sign)
_ROW_RULES: dict[str, tuple[str, frozenset[str], str, str, int]] = {
    "payment": ("deposit", frozenset({"confirmed", "held", "reversed"}), "credit", "debit", 1),
    "chargeback": ("deposit", frozenset({"reversed"}), "reverse:credit", "credit", -1),
    "payout": ("withdrawal", frozenset({"paid", "returned"}), "paid", "credit", -1),
    "payout_return": ("withdrawal", frozenset({"returned"}), "return", "debit", 1),
    RELEASE: ("deposit", frozenset({"confirmed", "held", "reversed"}), "", "", 1),
}


@dataclass(frozen=True)
class ReconciliationReport:
    """What one run found (``partial``: payments still partially settled by its rows)."""

    run_id: Any
    rows: int
    matched: int
    exceptions: list[dict[str, str]] = field(default_factory=list)
    partial: int = 0

    @property
    def clean(self) -> bool:
        """True when every row matched and nothing is missing."""
        return not self.exceptions


@dataclass
class Counted:
    """A settlement row that counts toward its payment (or releases a reserve)."""

    line: int
    row_type: str
    reference: str
    psp_id: str
    payment_id: Any
    payment_type: str
    currency: str
    gross: int
    fee: int
    reserve: int
    net: int
    batch: str
    settled_at: datetime | None
    payment_amount: int
    payment_at: datetime | None
    partial: bool = False


def tolerance(terms: SettlementTerms, amount: int) -> int:
    """How far a settled amount may be from the payment's (the larger of units and bps)."""
    return max(terms.amount_tolerance, amount * terms.amount_tolerance_bps // 10_000)


def numbers(
    row: dict[str, str] | Sequence[str], get: Any, row_type: str, terms: SettlementTerms
) -> tuple[int, int, int, int] | None:
    """A row's gross, fee, net and reserve (the configured rate when the file gives none);
    None when malformed: not integers, gross not positive, reserve negative, or too large."""
    try:
        gross, fee, net = int(get(row, "gross")), int(get(row, "fee")), int(get(row, "net"))
        raw = (get(row, "reserve") or "").strip()
        if raw:
            reserve = int(raw)
        elif row_type == "payment":
            reserve = gross * terms.reserve_bps // 10_000
        else:
            reserve = 0
    except (TypeError, ValueError):
        return None
    if gross <= 0 or reserve < 0 or max(abs(gross), abs(fee), abs(net), reserve) > _LIMIT:
        return None
    return gross, fee, net, reserve


def word(code: str, line: int, reference: str, **v: Any) -> dict[str, str]:
    """An exception as both paths word it (``code`` is the check that failed)."""
    at = f"Line {line}:"
    kind = code
    if code == "unknown_row_type":
        kind, detail = "malformed_row", f"{at} unknown row type {v['row_type']!r}."
    elif code == "malformed_row":
        detail = (
            f"{at} gross, fee, net and reserve must be integers "
            "(gross positive, reserve not negative)."
        )
    elif code == "duplicate_row":
        detail = f"{at} {reference} is settled twice in the file."
    elif code == "restated":
        kind = "duplicate_row"
        detail = f"{at} {reference} ({v['psp_id']}) was settled before with other figures."
    elif code == "missing_payment":
        kind, detail = "missing_in_ledger", f"{at} no {v['kind']} with reference {reference}."
    elif code == "currency_mismatch":
        detail = f"{at} settled in {v['currency']}, the {v['kind']} is in {v['payment_currency']}."
    elif code == "fee_mismatch":
        detail = (
            f"{at} net {v['net']} is not {v['sign']} * gross {v['gross']} - fee {v['fee']}"
            f" - reserve {v['reserve']}."
        )
    elif code == "expected_fee":
        kind = "fee_mismatch"
        detail = f"{at} fee {v['fee']} is not the expected {v['expected']} (± {v['tolerance']})."
    elif code == "status_mismatch":
        detail = (
            f"{at} the PSP settled a {v['row_type']} but the {v['kind']} is {v['payment_status']}."
        )
    elif code == "ledger_mismatch":
        kind = "missing_in_ledger" if v["posted"] == 0 else "amount_mismatch"
        detail = (
            f"{at} the ledger's clearing posting {v['key']} is {v['posted']}; "
            f"the {v['kind']} is {v['payment_amount']}."
        )
    elif code == "amount_mismatch":
        detail = (
            f"{at} settled gross {v['gross']}, the {v['kind']} is {v['payment_amount']} "
            f"{v['payment_currency']}."
        )
    elif code == "over_settled":
        kind = "amount_mismatch"
        detail = (
            f"{at} settled gross {v['gross']} ({v['cum']} in all), the {v['kind']} is "
            f"{v['payment_amount']} {v['payment_currency']}."
        )
    elif code == "over_released":
        kind = "amount_mismatch"
        detail = (
            f"{at} reserve release {v['gross']} ({v['cum']} in all), {v['held']} "
            f"{v['currency']} of {reference} was withheld."
        )
    else:  # timing
        kind = "timing_mismatch"
        detail = (
            f"{at} settled on {v['settled']:%Y-%m-%d}, {v['days']} days after the "
            f"{v['kind']} of {v['paid']:%Y-%m-%d}; the window is T+{v['window']}."
        )
    return {"kind": kind, "reference": reference, "detail": detail, "line": str(line)}


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
    if connection.vendor == "postgresql":
        from brokerdesk.payments import reconciliation_sql

        return reconciliation_sql.reconcile(
            text, provider=provider, source=source, actor=actor, missing_grace=missing_grace
        )
    terms = settlement_terms(provider)
    rows = list(reader)
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
        before = _counted_before(provider, rows)
        found: list[dict[str, str]] = []
        candidates: list[Counted] = []
        seen: set[tuple[str, str, str]] = set()
        replays = 0
        stamps: set[str] = set()
        for number, row in enumerate(rows, start=2):  # line 1 is the header
            stamps.add(row.get("settled_at") or "")
            checked = _check_row(row, number, seen, before, payments, postings, terms, run.id)
            if checked is None:
                replays += 1
            elif isinstance(checked, dict):
                found.append(checked)
            else:
                candidates.append(checked)
        prior = _settled_before(provider, {c.reference for c in candidates})
        counted, problems = judge(candidates, prior, terms)
        releases = [c for c in candidates if c.row_type == RELEASE]
        held, released = reserves(provider, {c.reference for c in releases})
        for c in counted:
            if c.row_type == "payment" and c.reference in held:
                held[c.reference] += c.reserve
        accepted, refused = judge_releases(releases, held, released)
        found.extend(problems + refused)
        found.sort(key=lambda p: int(p["line"]))
        counted.extend(accepted)
        finish_counted(provider, run.id, counted, terms, now)
        Settlement.objects.bulk_create(
            [
                Settlement(
                    payment_type=c.payment_type,
                    payment_id=c.payment_id,
                    batch=c.batch,
                    run_id=run.id,
                    created_at=now,
                )
                for c in counted
                if c.row_type != RELEASE and not c.partial
            ],
            batch_size=5_000,
            ignore_conflicts=True,
        )
        post_settlements(provider, run.id, totals(counted), actor)
        flagged = _lines(found)
        matched = replays + sum(1 for c in counted if c.line not in flagged)
        latest = max(filter(None, map(_parse_time, stamps)), default=None)
        if latest is not None:
            in_file = {row.get("reference", "") for row in rows}
            found.extend(_missing_at_psp(provider, latest - missing_grace, in_file))
            found.extend(overdue(provider, latest, terms))
        partial = still_partial(counted)
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
            after={
                "rows": len(rows),
                "matched": matched,
                "exceptions": len(found),
                "partial": partial,
            },
        )
    return ReconciliationReport(run.id, len(rows), matched, found, partial)


def still_partial(counted: Iterable[Counted]) -> int:
    """Payments whose last counted row left them partially settled."""
    last: dict[tuple[str, Any], bool] = {}
    for c in sorted(counted, key=lambda c: c.line):
        if c.row_type != RELEASE:
            last[(c.row_type, c.payment_id)] = c.partial
    return sum(last.values())


def _lines(found: list[dict[str, str]]) -> set[int]:
    return {int(p["line"]) for p in found if p.get("line")}


def judge(
    candidates: Iterable[Counted], prior: dict[tuple[str, Any], int], terms: SettlementTerms
) -> tuple[list[Counted], list[dict[str, str]]]:
    """Sum each payment's rows in line order (after what earlier files settled): a row that
    takes the sum past the amount and its tolerance is over-settled and not counted; a row
    outside the T+N window is a timing exception but counts. Releases are left out."""
    counted: list[Counted] = []
    problems: list[dict[str, str]] = []
    sums = dict(prior)
    for c in sorted(candidates, key=lambda c: c.line):
        if c.row_type == RELEASE:
            continue
        group = (c.row_type, c.payment_id)
        cum = sums.get(group, 0) + c.gross
        slack = tolerance(terms, c.payment_amount)
        kind = c.payment_type
        if cum > c.payment_amount + slack:
            problems.append(
                word(
                    "over_settled",
                    c.line,
                    c.reference,
                    gross=c.gross,
                    cum=cum,
                    kind=kind,
                    payment_amount=c.payment_amount,
                    payment_currency=c.currency,
                )
            )
            sums[group] = cum  # later rows of the payment are over too (sums only grow)
            continue
        sums[group] = cum
        c.partial = cum < c.payment_amount - slack
        counted.append(c)
        late = _late(c.row_type, c.settled_at, c.payment_at, terms)
        if late is not None:
            problems.append(
                word(
                    "timing",
                    c.line,
                    c.reference,
                    settled=c.settled_at,
                    days=late,
                    kind=kind,
                    paid=c.payment_at,
                    window=terms.settlement_days,
                )
            )
    return counted, problems


def _late(
    row_type: str, settled: datetime | None, paid: datetime | None, terms: SettlementTerms
) -> int | None:
    """Days from payment to settlement when outside the T+N window, else None."""
    if row_type not in TIMED or settled is None or paid is None:
        return None
    days = (_day(settled) - _day(paid)).days
    return days if days < 0 or days > terms.settlement_days else None


def judge_releases(
    releases: Iterable[Counted], held: dict[str, int], released: dict[str, int]
) -> tuple[list[Counted], list[dict[str, str]]]:
    """Reserve releases in line order: each may release what is still withheld of its
    payment (earlier files and this file's counted rows); more is an exception."""
    accepted: list[Counted] = []
    problems: list[dict[str, str]] = []
    done = dict(released)
    for c in sorted(releases, key=lambda c: c.line):
        cum = done.get(c.reference, 0) + c.gross
        withheld = held.get(c.reference, 0)
        if cum > withheld:
            problems.append(
                word(
                    "over_released",
                    c.line,
                    c.reference,
                    gross=c.gross,
                    cum=cum,
                    held=withheld,
                    currency=c.currency,
                )
            )
            continue
        done[c.reference] = cum
        accepted.append(c)
    return accepted, problems


def reserves(provider: str, references: set[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Reserves withheld and released so far, by payment reference."""
    held: dict[str, int] = dict.fromkeys(references, 0)
    released: dict[str, int] = dict.fromkeys(references, 0)
    refs = sorted(references)
    for i in range(0, len(refs), 5_000):
        for reference, row_type, reserve, gross in SettlementLine.objects.filter(
            Q(reserve__gt=0) | Q(row_type=RELEASE),
            provider=provider,
            reference__in=refs[i : i + 5_000],
        ).values_list("reference", "row_type", "reserve", "gross"):
            if row_type == RELEASE:
                released[reference] += gross
            elif row_type == "payment":
                held[reference] += reserve
    return held, released


def finish_counted(
    provider: str, run_id: Any, counted: list[Counted], terms: SettlementTerms, now: datetime
) -> None:
    """Write the counted rows (``SettlementLine``), the reserve due dates with them."""
    SettlementLine.objects.bulk_create(
        [
            SettlementLine(
                provider=provider,
                row_type=c.row_type,
                reference=c.reference,
                psp_id=c.psp_id,
                payment_id=c.payment_id,
                payment_type=c.payment_type,
                currency=c.currency,
                gross=c.gross,
                fee=c.fee,
                reserve=c.reserve,
                net=c.net,
                batch=c.batch,
                run_id=run_id,
                line=c.line,
                settled_at=c.settled_at,
                reserve_due=(
                    _day(c.settled_at or now) + timedelta(days=terms.reserve_days)
                    if c.reserve > 0
                    else None
                ),
                payment_amount=c.payment_amount,
                payment_at=c.payment_at,
                partial=c.partial,
                created_at=now,
            )
            for c in counted
        ],
        batch_size=2_000,
    )


def totals(counted: Iterable[Counted]) -> dict[tuple[str, str], list[int]]:
    """(batch, currency) → [to clearing, net to bank, fees, to the reserve]."""
    out: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for c in counted:
        t = out[(c.batch, c.currency)]
        if c.row_type == RELEASE:
            t[3] -= c.gross
        else:
            t[0] += _ROW_RULES[c.row_type][4] * c.gross
            t[3] += c.reserve
        t[1] += c.net
        t[2] += c.fee
    return dict(out)


def post_settlements(
    provider: str, run_id: Any, sums: dict[tuple[str, str], list[int]], actor: str
) -> None:
    """Book each batch's counted rows, one posting per batch and currency (idempotent by
    its key): the clearing account is relieved of the gross, the bank gets the net, the fees
    go to ``psp_fee_expense`` and the withheld reserve to the PSP's reserve account."""
    for (batch, currency), (to_clearing, net, fee, reserve) in sorted(sums.items()):
        debits: dict[Any, int] = defaultdict(int)
        debits[clearing_account(provider, currency)] -= to_clearing
        debits[ledger.system_account("bank", currency).id] += net
        if fee:
            account = ledger.system_account("psp_fee_expense", currency, qualifier=provider)
            debits[account.id] += fee
        if reserve:
            account = reserve_account(provider, currency)
            debits[account] += reserve
        legs = tuple(
            ledger.debit(a, v) if v > 0 else ledger.credit(a, -v)
            for a, v in sorted(debits.items(), key=lambda kv: str(kv[0]))
            if v
        )
        if len(legs) < 2:
            continue
        ledger.post_transfer(
            ledger.TransferRequest(
                f"settlement:{provider}:{run_id}:{batch}:{currency}",
                "psp_settlement",
                currency,
                legs,
                metadata={"provider": provider, "batch": batch, "run": str(run_id)},
                actor=actor,
                reason=f"settlement {batch}",
            )
        )


def reserve_account(provider: str, currency: str) -> Any:
    """The receivable holding what ``provider`` withholds as a rolling reserve."""
    return ledger.system_account("psp_clearing", currency, qualifier=f"{provider}:reserve").id


def overdue(provider: str, latest: datetime, terms: SettlementTerms) -> list[dict[str, str]]:
    """Partial settlements still short past their T+N window, and reserves not released by
    their due date, as of the file's settlement date ``latest``."""
    found: list[dict[str, str]] = []
    today = _day(latest)
    partial = SettlementLine.objects.filter(provider=provider, partial=True).values("reference")
    groups = (
        SettlementLine.objects.filter(
            provider=provider, row_type__in=SETTLING, reference__in=partial
        )
        .values("row_type", "payment_id", "reference", "payment_type", "currency")
        .annotate(settled=Sum("gross"), amount=Max("payment_amount"), paid=Min("payment_at"))
        .order_by("reference", "row_type")
    )
    for g in groups:
        short = g["settled"] < g["amount"] - tolerance(terms, g["amount"])
        paid = g["paid"]
        if short and paid is not None and (today - _day(paid)).days > terms.settlement_days:
            found.append(
                {
                    "kind": "amount_mismatch",
                    "reference": g["reference"],
                    "detail": f"{g['payment_type'].capitalize()} {g['reference']} "
                    f"({g['amount']} {g['currency']}) is settled {g['settled']} so far by "
                    f"{g['row_type']} rows, past its T+{terms.settlement_days} window.",
                }
            )
    held = (
        SettlementLine.objects.filter(Q(reserve__gt=0) | Q(row_type=RELEASE), provider=provider)
        .values("reference", "currency")
        .annotate(
            held=Sum("reserve", filter=Q(row_type="payment")),
            released=Sum("gross", filter=Q(row_type=RELEASE)),
            due=Min("reserve_due"),
        )
        .order_by("reference")
    )
    for r in held:
        outstanding = (r["held"] or 0) - (r["released"] or 0)
        if outstanding > 0 and r["due"] is not None and r["due"] < today:
            found.append(
                {
                    "kind": "reserve_overdue",
                    "reference": r["reference"],
                    "detail": f"Reserve of {r['reference']}: {outstanding} {r['currency']} "
                    f"withheld, due for release on {r['due']:%Y-%m-%d}, is not released.",
                }
            )
    return found


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


def _payments(provider: str, rows: list[dict[str, str]]) -> dict[tuple[str, str], Any]:
    refs = sorted({r.get("reference", "") for r in rows})
    out: dict[tuple[str, str], Any] = {}
    fields = ("id", "reference", "amount", "currency", "status", "created_at")
    for i in range(0, len(refs), 5_000):
        chunk = refs[i : i + 5_000]
        for d in Deposit.objects.filter(provider=provider, reference__in=chunk).only(
            *fields, "confirmed_at"
        ):
            d.paid_at = d.confirmed_at or d.created_at  # type: ignore[attr-defined]
            out[("deposit", d.reference)] = d
        for w in Withdrawal.objects.filter(provider=provider, reference__in=chunk).only(
            *fields, "updated_at"
        ):
            w.paid_at = w.updated_at  # type: ignore[attr-defined]
            out[("withdrawal", w.reference)] = w
    return out


def _counted_before(
    provider: str, rows: list[dict[str, str]]
) -> dict[tuple[str, str, str], tuple[int, int, int, int]]:
    """The file's rows an earlier run counted: (row type, reference, PSP id) → their gross,
    fee, net and reserve."""
    refs = sorted({r.get("reference", "") for r in rows})
    out: dict[tuple[str, str, str], tuple[int, int, int, int]] = {}
    for i in range(0, len(refs), 5_000):
        for row_type, reference, psp_id, *figures in SettlementLine.objects.filter(
            provider=provider, reference__in=refs[i : i + 5_000]
        ).values_list("row_type", "reference", "psp_id", "gross", "fee", "net", "reserve"):
            out[(row_type, reference, psp_id)] = (figures[0], figures[1], figures[2], figures[3])
    return out


def _settled_before(provider: str, references: set[str]) -> dict[tuple[str, Any], int]:
    """What earlier runs counted toward these references, by (row type, payment id)."""
    refs = sorted(references)
    out: dict[tuple[str, Any], int] = {}
    for i in range(0, len(refs), 5_000):
        for row_type, payment_id, settled in (
            SettlementLine.objects.filter(provider=provider, reference__in=refs[i : i + 5_000])
            .values_list("row_type", "payment_id")
            .annotate(settled=Sum("gross"))
        ):
            out[(row_type, payment_id)] = settled
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
    seen: set[tuple[str, str, str]],
    before: dict[tuple[str, str, str], tuple[int, int, int, int]],
    payments: dict[tuple[str, str], Any],
    postings: dict[str, tuple[int, int]],
    terms: SettlementTerms,
    run_id: Any,
) -> Counted | dict[str, str] | None:
    """The checks one row passes on its own: a problem, None for a row an earlier run
    counted, or the row to count."""
    reference = row.get("reference") or ""
    row_type = row.get("row_type") or ""
    rule = _ROW_RULES.get(row_type)
    if rule is None:
        return word("unknown_row_type", line, reference, row_type=row.get("row_type"))
    parsed = numbers(row, lambda r, k: r.get(k), row_type, terms)
    if parsed is None:
        return word("malformed_row", line, reference)
    gross, fee, net, reserve = parsed
    kind, statuses, suffix, side, sign = rule
    psp_id = row.get("psp_id") or ""
    if (row_type, reference, psp_id) in seen:
        return word("duplicate_row", line, reference)
    seen.add((row_type, reference, psp_id))
    counted_before = before.get((row_type, reference[:64], psp_id[:100]))
    if counted_before == (gross, fee, net, reserve):
        return None
    payment = payments.get((kind, reference))
    if payment is None:
        return word("missing_payment", line, reference, kind=kind)
    currency = row.get("currency") or ""
    if currency != payment.currency:
        return word(
            "currency_mismatch",
            line,
            reference,
            currency=currency,
            kind=kind,
            payment_currency=payment.currency,
        )
    if gross > payment.amount + tolerance(terms, payment.amount):
        return word(
            "amount_mismatch",
            line,
            reference,
            gross=gross,
            kind=kind,
            payment_amount=payment.amount,
            payment_currency=payment.currency,
        )
    if net != sign * gross - fee - reserve:
        return word(
            "fee_mismatch",
            line,
            reference,
            net=net,
            sign=sign,
            gross=gross,
            fee=fee,
            reserve=reserve,
        )
    if terms.fee_bps is not None and row_type in TIMED:
        expected = gross * terms.fee_bps // 10_000 + terms.fee_fixed
        if abs(fee - expected) > terms.fee_tolerance:
            return word(
                "expected_fee",
                line,
                reference,
                fee=fee,
                expected=expected,
                tolerance=terms.fee_tolerance,
            )
    if payment.status not in statuses:
        return word(
            "status_mismatch",
            line,
            reference,
            row_type=row_type,
            kind=kind,
            payment_status=payment.status,
        )
    if row_type != RELEASE:
        key = f"{kind}:{reference}:{suffix}"
        debit, credit = postings.get(key, (0, 0))
        posted = debit if side == "debit" else credit
        if posted != payment.amount:
            return word(
                "ledger_mismatch",
                line,
                reference,
                key=key,
                posted=posted,
                kind=kind,
                payment_amount=payment.amount,
            )
    if counted_before is not None:
        return word("restated", line, reference, psp_id=psp_id)
    return Counted(
        line=line,
        row_type=row_type,
        reference=reference,
        psp_id=psp_id[:100],
        payment_id=payment.id,
        payment_type=kind,
        currency=currency,
        gross=gross,
        fee=fee,
        reserve=reserve,
        net=net,
        batch=(row.get("batch_id") or "")[:64] or str(run_id),
        settled_at=_parse_time(row.get("settled_at") or ""),
        payment_amount=payment.amount,
        payment_at=payment.paid_at,
    )


def _missing_at_psp(provider: str, cutoff: datetime, in_file: set[str]) -> list[dict[str, str]]:
    """Confirmed deposits up to ``cutoff`` in no settlement so far (rows in this file count,
    matched or not: a mismatched row is already an exception of its own; a partially
    settled deposit is followed by ``overdue``)."""
    found = []
    settled = Settlement.objects.filter(payment_type="deposit").values("pk")
    counted = SettlementLine.objects.filter(provider=provider, row_type__in=DEPOSIT_ROWS).values(
        "reference"
    )
    for d in (
        Deposit.objects.filter(
            provider=provider, status__in=("confirmed", "held"), confirmed_at__lte=cutoff
        )
        .exclude(id__in=settled)
        .exclude(reference__in=counted)
        .order_by("confirmed_at")
    ):
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


def _day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def _parse_time(text: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
