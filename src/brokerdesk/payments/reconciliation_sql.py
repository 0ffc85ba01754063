"""Set-based reconciliation on PostgreSQL: the same checks as ``reconciliation``'s row loop,
for millions of rows.

The file is parsed once (the ``csv`` module and ``reconciliation.numbers``, as the SQLite
path does) and streamed by ``COPY`` into a temporary staging table; queries then join every
row to its payment, to the rows counted before and to the clearing-account postings of the
ledger (by idempotency key) and classify it in one statement (a window sum only for payments
with several rows in the file), the counted rows go into ``SettlementLine`` and the complete
payments get a ``Settlement`` row by one ``INSERT`` each, the batch totals for the ledger
posting come from one ``GROUP BY``, confirmed deposits absent from the file are found by one
anti-join, and the exceptions are written by ``COPY``. Only the rows that did not match and
the (few) reserve releases come back to Python, which words and judges them with the row
loop's own functions.

The ledger's postings are read straight from its tables (the batch postings are written
through ``ledger.post_transfer``): the ledger offers no set-based query by idempotency key
yet, and reading a million statement lines through the ORM costs more than the whole run.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction

from brokerdesk.core import audit, bulk, clock
from brokerdesk.core.errors import DomainError
from brokerdesk.payments.models import ReconciliationException, ReconciliationRun
from brokerdesk.payments.reconciliation import (
    _ROW_RULES,
    RELEASE,
    Counted,
    ReconciliationReport,
    _parse_time,
    finish_counted,
    judge_releases,
    numbers,
    overdue,
    post_settlements,
    reserves,
    totals,
    word,
)
from brokerdesk.payments.services import SettlementTerms, clearing_account, settlement_terms

_DROP_IF_EXISTS = (
    "DROP TABLE IF EXISTS payments_stl_checked, payments_stl_posted, payments_stl_rows, "
    "payments_stl_stage, payments_stl_prior, payments_stl_cum"
)

_CREATE_STAGE = """
CREATE TEMP TABLE payments_stl_stage (
    line bigint, row_type text, reference text, psp_id text, currency text,
    gross bigint, fee bigint, net bigint, reserve bigint, malformed boolean, batch_id text,
    settled_at timestamptz
)"""

# Every row with its rule, its rank among its twins, its payment, its ledger key and
# whether an earlier run counted it.
_ROWS = """
CREATE TEMP TABLE payments_stl_rows AS
WITH rules (row_type, kind, statuses, suffix, side, sign) AS (
    SELECT * FROM unnest(%(rt)s::text[], %(kind)s::text[], %(statuses)s::text[],
                         %(suffix)s::text[], %(side)s::text[], %(sign)s::int[])
),
clearing (currency, account_id) AS (
    SELECT * FROM unnest(%(cur)s::text[], %(acct)s::uuid[])
),
s AS (
    SELECT st.*, r.kind, r.statuses, r.suffix, r.side, r.sign,
           row_number() OVER (
               PARTITION BY st.row_type, st.reference, st.psp_id,
                            (r.kind IS NULL OR st.malformed)
               ORDER BY st.line
           ) AS nth,
           count(*) OVER (PARTITION BY st.row_type, st.reference) > 1 AS multi
    FROM payments_stl_stage st LEFT JOIN rules r ON r.row_type = st.row_type
),
p AS (
    SELECT 'deposit' AS kind, id, reference, amount, currency, status, created_at,
           coalesce(confirmed_at, created_at) AS paid_at
    FROM payments_deposit WHERE provider = %(provider)s
    UNION ALL
    SELECT 'withdrawal', id, reference, amount, currency, status, created_at,
           updated_at
    FROM payments_withdrawal WHERE provider = %(provider)s
)
SELECT s.line, s.row_type, s.reference, s.psp_id, s.currency, s.gross, s.fee, s.net,
       s.reserve, s.malformed, s.batch_id, s.settled_at, s.kind, s.statuses, s.suffix,
       s.side, s.sign, s.nth,
       p.id AS payment_id, p.reference AS payment_reference, p.currency AS payment_currency,
       p.amount AS payment_amount, p.status AS payment_status,
       p.created_at AS payment_created_at, p.paid_at,
       CASE WHEN s.kind IS NOT NULL AND NOT s.malformed AND s.nth = 1
                 AND s.row_type <> 'reserve_release' AND c.account_id IS NOT NULL
            THEN s.kind || ':' || s.reference || ':' || s.suffix END AS key,
       c.account_id,
       l.id IS NOT NULL
           AND (l.gross, l.fee, l.net, l.reserve) = (s.gross, s.fee, s.net, s.reserve)
           AS before,
       l.id IS NOT NULL AS restated, s.multi
FROM s
LEFT JOIN p ON p.kind = s.kind AND p.reference = s.reference
LEFT JOIN clearing c ON c.currency = s.currency
LEFT JOIN payments_settlementline l
       ON l.provider = %(provider)s AND l.row_type = s.row_type
      AND l.reference = left(s.reference, 64) AND l.psp_id = left(s.psp_id, 100)
"""

# The clearing-account postings of those keys (entries from the oldest payment on: the
# ledger's entries are partitioned by month, so older months are not read).
_POSTED = """
CREATE TEMP TABLE payments_stl_posted AS
SELECT t.idempotency_key AS key, x.account_id, x.debit, x.credit
FROM (
    SELECT e.transfer_id, e.account_id,
           coalesce(sum(e.amount) FILTER (WHERE e.side = 'D'), 0) AS debit,
           coalesce(sum(e.amount) FILTER (WHERE e.side = 'C'), 0) AS credit
    FROM ledger_entry e
    WHERE e.account_id = ANY(%s::uuid[]) AND NOT e.is_pending AND e.created_at >= %s
    GROUP BY 1, 2
) AS x
JOIN ledger_transfer t ON t.id = x.transfer_id
WHERE t.idempotency_key IN (SELECT key FROM payments_stl_rows WHERE key IS NOT NULL)
"""

# What earlier runs counted toward the file's payments.
_PRIOR = """
CREATE TEMP TABLE payments_stl_prior AS
SELECT row_type, reference, sum(gross) AS settled
FROM payments_settlementline
WHERE provider = %s
  AND (row_type, reference) IN (
      SELECT row_type, left(reference, 64) FROM payments_stl_rows WHERE payment_id IS NOT NULL
  )
GROUP BY 1, 2
"""

# Every row with ``pre``: the checks it passes on its own, in the order the row loop checks
# them (NULL: it may count; 'replay': counted before).
_PRE = """
SELECT r.*, x.posted, x.slack,
    CASE
        WHEN r.kind IS NULL THEN 'unknown_row_type'
        WHEN r.malformed THEN 'malformed_row'
        WHEN r.nth > 1 THEN 'duplicate_row'
        WHEN r.before THEN 'replay'
        WHEN r.payment_reference IS NULL THEN 'missing_payment'
        WHEN r.currency <> r.payment_currency THEN 'currency_mismatch'
        WHEN r.gross > r.payment_amount + x.slack THEN 'amount_mismatch'
        WHEN r.net <> r.sign * r.gross - r.fee - r.reserve THEN 'fee_mismatch'
        WHEN %(fee_bps)s::bigint IS NOT NULL AND r.row_type IN ('payment', 'payout')
             AND abs(r.fee - div(r.gross::numeric * %(fee_bps)s::bigint, 10000)
                     - %(fee_fixed)s) > %(fee_tol)s
            THEN 'expected_fee'
        WHEN NOT (r.payment_status = ANY(string_to_array(r.statuses, ',')))
            THEN 'status_mismatch'
        WHEN r.row_type <> 'reserve_release' AND x.posted <> r.payment_amount
            THEN 'ledger_mismatch'
        WHEN r.restated THEN 'restated'
    END AS pre
FROM payments_stl_rows r
LEFT JOIN payments_stl_posted po ON po.key = r.key AND po.account_id = r.account_id
CROSS JOIN LATERAL (
    SELECT coalesce(CASE WHEN r.side = 'debit' THEN po.debit ELSE po.credit END, 0) AS posted,
           CASE WHEN %(tol_bps)s = 0 THEN %(tol)s  -- folded by the planner
                ELSE greatest(%(tol)s, div(r.payment_amount::numeric * %(tol_bps)s, 10000))
           END AS slack
) AS x
"""

# The running settled sum of payments with several rows in the file (usually none).
_CUM = (
    "CREATE TEMP TABLE payments_stl_cum AS "
    "SELECT line, sum(gross) OVER (PARTITION BY row_type, reference ORDER BY line) AS run "
    "FROM (" + _PRE + ") AS q WHERE q.multi AND q.pre IS NULL"
)

# Every row classified: ``cum`` its payment's settled sum after it (earlier files
# included), ``days`` from payment to settlement, ``problem`` NULL when it counts cleanly
# ('timing' counts too; 'replay' was counted before; releases are judged after),
# ``counted`` whether it counts toward its payment.
_CLASSIFY = """
CREATE TEMP TABLE payments_stl_checked AS
SELECT y.*,
    y.row_type <> 'reserve_release' AND (y.problem IS NULL OR y.problem = 'timing') AS counted
FROM (
    SELECT x.*,
        CASE
            WHEN x.pre IS NOT NULL THEN x.pre
            WHEN x.row_type = 'reserve_release' THEN NULL
            WHEN x.cum > x.payment_amount + x.slack THEN 'over_settled'
            WHEN x.row_type IN ('payment', 'payout') AND x.days IS NOT NULL
                 AND (x.days < 0 OR x.days > %(window)s) THEN 'timing'
        END AS problem
    FROM (
        SELECT c.*, coalesce(pr.settled, 0) + coalesce(cu.run, c.gross) AS cum,
            (c.settled_at AT TIME ZONE 'UTC')::date - (c.paid_at AT TIME ZONE 'UTC')::date
                AS days
        FROM (_PRE_) AS c
        LEFT JOIN payments_stl_cum cu ON cu.line = c.line
        LEFT JOIN payments_stl_prior pr
               ON pr.row_type = c.row_type AND pr.reference = left(c.reference, 64)
    ) AS x
) AS y
""".replace("_PRE_", _PRE)

_LINES = """
INSERT INTO payments_settlementline (
    provider, row_type, reference, psp_id, payment_id, payment_type, currency, gross, fee,
    reserve, net, batch, run_id, line, settled_at, reserve_due, payment_amount, payment_at,
    partial, created_at
)
SELECT %(provider)s, row_type, reference, left(psp_id, 100), payment_id, kind, currency,
       gross, fee, reserve, net, coalesce(nullif(left(batch_id, 64), ''), %(run)s),
       %(run)s::uuid, line, settled_at,
       CASE WHEN reserve > 0
            THEN (coalesce(settled_at, %(now)s) AT TIME ZONE 'UTC')::date + %(days)s END,
       payment_amount, paid_at, cum < payment_amount - slack, %(now)s
FROM payments_stl_checked WHERE counted
"""

# The complete payments not settled before (a payment twice in the file, as a payment and
# its chargeback, keeps one row's batch: ``DO NOTHING`` within the statement too).
_MARK_SETTLED = """
INSERT INTO payments_settlement (payment_id, payment_type, batch, run_id, created_at)
SELECT payment_id, kind, coalesce(nullif(left(batch_id, 64), ''), %(run)s), %(run)s::uuid,
       %(now)s
FROM payments_stl_checked
WHERE counted AND cum >= payment_amount - slack
ON CONFLICT (payment_id) DO NOTHING
"""

_TOTALS = """
SELECT coalesce(nullif(left(batch_id, 64), ''), %(run)s), currency, sum(sign * gross), sum(net),
       sum(fee), sum(reserve)
FROM payments_stl_checked WHERE counted GROUP BY 1, 2
"""

_MATCHED = """
SELECT count(*) FROM payments_stl_checked
WHERE (problem IS NULL AND row_type <> 'reserve_release') OR problem = 'replay'
"""

# payments whose last counted row left them partially settled (sums only grow)
_PARTIAL = """
SELECT count(*) FROM (
    SELECT row_type, payment_id, bool_and(cum < payment_amount - slack) AS partial
    FROM payments_stl_checked
    WHERE counted AND (multi OR cum < payment_amount - slack)
    GROUP BY 1, 2
) AS g
WHERE partial
"""

_RELEASES = """
SELECT line, reference, psp_id, payment_id, currency, gross, fee, reserve, net, batch_id,
       settled_at, payment_amount, paid_at
FROM payments_stl_checked
WHERE row_type = 'reserve_release' AND pre IS NULL ORDER BY line
"""

_HELD_HERE = """
SELECT reference, sum(reserve) FROM payments_stl_checked
WHERE counted AND row_type = 'payment' AND reference = ANY(%s) GROUP BY reference
"""

_PROBLEMS = """
SELECT problem, line, row_type, reference, psp_id, currency, gross, fee, net, reserve, kind, sign,
       suffix, payment_currency, payment_amount, payment_status, posted, cum, settled_at,
       days, paid_at
FROM payments_stl_checked
WHERE problem IS NOT NULL AND problem <> 'replay' ORDER BY line
"""

_MISSING_AT_PSP = """
SELECT d.reference, d.amount, d.currency, d.confirmed_at
FROM payments_deposit d
WHERE d.provider = %s AND d.status IN ('confirmed', 'held') AND d.confirmed_at <= %s
  AND NOT EXISTS (SELECT 1 FROM payments_stl_stage st WHERE st.reference = d.reference)
  AND NOT EXISTS (SELECT 1 FROM payments_settlement s WHERE s.payment_id = d.id)
  AND NOT EXISTS (
      SELECT 1 FROM payments_settlementline l
      WHERE l.provider = d.provider AND l.reference = d.reference
        AND l.row_type IN ('payment', 'chargeback', 'reserve_release')
  )
ORDER BY d.confirmed_at, d.id
"""


def reconcile(
    text: str, *, provider: str, source: str, actor: str, missing_grace: timedelta
) -> ReconciliationReport:
    """Reconcile a settlement file (its columns already checked) set-based; see the module."""
    now = clock.now()
    terms = settlement_terms(provider)
    with transaction.atomic():
        run = ReconciliationRun.objects.create(
            provider=provider,
            source=source[:300],
            file_sha256=hashlib.sha256(text.encode()).hexdigest(),
            started_at=now,
            actor=actor,
        )
        at: dict[str, Any] = {
            "run": str(run.id),
            "now": now,
            "provider": provider,
            "days": terms.reserve_days,
        }
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL work_mem = '256MB'")
            cursor.execute(_DROP_IF_EXISTS)
            cursor.execute(_CREATE_STAGE)
            rows, currencies, latest = _stage(cursor, text, terms)
            cursor.execute("ANALYZE payments_stl_stage")
            params = _classify_params(provider, currencies)
            cursor.execute(_ROWS, params)
            cursor.execute("ANALYZE payments_stl_rows")
            cursor.execute("SELECT min(payment_created_at) FROM payments_stl_rows")
            since = cursor.fetchone()[0] or now
            cursor.execute(_POSTED, [params["acct"], since])
            cursor.execute("ANALYZE payments_stl_posted")
            cursor.execute(_PRIOR, [provider])
            cursor.execute(_CUM, _terms_params(terms))
            cursor.execute(_CLASSIFY, _terms_params(terms))
            accepted, refused = _releases(cursor, provider, run.id)
            cursor.execute(_LINES, at)
            finish_counted(provider, run.id, accepted, terms, now)
            cursor.execute(_MARK_SETTLED, at)
            cursor.execute(_TOTALS, at)
            sums = {(b, c): [int(x) for x in v] for b, c, *v in cursor.fetchall()}
            for key, extra in totals(accepted).items():
                sums[key] = [a + b for a, b in zip(sums.get(key, [0, 0, 0, 0]), extra, strict=True)]
            post_settlements(provider, run.id, sums, actor)
            cursor.execute(_MATCHED)
            matched = int(cursor.fetchone()[0]) + len(accepted)
            cursor.execute(_PARTIAL)
            partial = int(cursor.fetchone()[0])
            cursor.execute(_PROBLEMS)
            found = [_problem(terms, *row) for row in cursor.fetchall()]
            found = sorted(found + refused, key=lambda p: int(p["line"]))
            if latest is not None:
                cursor.execute(_MISSING_AT_PSP, [provider, latest - missing_grace])
                found.extend(_missing(*row) for row in cursor.fetchall())
            cursor.execute(_DROP_IF_EXISTS)
        if latest is not None:
            found.extend(overdue(provider, latest, terms))
        bulk.insert(
            ReconciliationException,
            [
                ReconciliationException(
                    run_id=run.id,
                    kind=p["kind"],
                    reference=p["reference"][:64],
                    detail=p["detail"][:500],
                    data={"line": p.get("line", "")},
                    created_at=now,
                    updated_at=now,
                )
                for p in found
            ],
        )
        run.rows = rows
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
            after={"rows": rows, "matched": matched, "exceptions": len(found), "partial": partial},
        )
    return ReconciliationReport(run.id, rows, matched, found, partial)


def _releases(
    cursor: Any, provider: str, run_id: Any
) -> tuple[list[Counted], list[dict[str, str]]]:
    """The file's reserve releases, judged in Python as the row loop judges them (they are
    few: one per payment at most, days after it settled)."""
    cursor.execute(_RELEASES)
    releases = [
        Counted(
            line=int(line),
            row_type=RELEASE,
            reference=reference,
            psp_id=psp_id[:100],
            payment_id=payment_id,
            payment_type="deposit",
            currency=currency,
            gross=gross,
            fee=fee,
            reserve=reserve,
            net=net,
            batch=(batch or "")[:64] or str(run_id),
            settled_at=settled_at,
            payment_amount=amount,
            payment_at=paid_at,
        )
        for (
            line,
            reference,
            psp_id,
            payment_id,
            currency,
            gross,
            fee,
            reserve,
            net,
            batch,
            settled_at,
            amount,
            paid_at,
        ) in cursor.fetchall()
    ]
    if not releases:
        return [], []
    refs = {c.reference for c in releases}
    held, released = reserves(provider, refs)
    cursor.execute(_HELD_HERE, [sorted(refs)])
    for reference, amount in cursor.fetchall():
        held[reference] += int(amount)
    return judge_releases(releases, held, released)


def _terms_params(terms: SettlementTerms) -> dict[str, Any]:
    return {
        "window": terms.settlement_days,
        "tol": terms.amount_tolerance,
        "tol_bps": terms.amount_tolerance_bps,
        "fee_bps": terms.fee_bps,
        "fee_fixed": terms.fee_fixed,
        "fee_tol": terms.fee_tolerance,
    }


def _stage(cursor: Any, text: str, terms: SettlementTerms) -> tuple[int, set[str], datetime | None]:
    """COPY the file's rows into the staging table; return the row count, the currencies and
    the latest ``settled_at``. Rows are numbered as the row loop numbers them (the header is
    line 1, blank lines are skipped); a short row reads as empty fields."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    index = {name: i for i, name in enumerate(header)}  # the last of twins, as DictReader
    width = max(index.values()) + 1

    def column(name: str) -> int:
        return index.get(name, width + 10)

    i_type, i_ref, i_cur = column("row_type"), column("reference"), column("currency")
    i_psp, i_batch, i_settled = column("psp_id"), column("batch_id"), column("settled_at")

    def get(row: list[str], name: str) -> str | None:
        i = index.get(name)
        return None if i is None else row[i]

    currencies: set[str] = set()
    times: dict[str, datetime | None] = {}
    line = 1
    with cursor.cursor.copy("COPY payments_stl_stage FROM STDIN") as copy:
        for row in reader:
            if not row:
                continue
            line += 1
            if len(row) < width:
                row = row + [""] * (width - len(row))
            currency = row[i_cur] if i_cur < width else ""
            currencies.add(currency)
            stamp = row[i_settled] if i_settled < width else ""
            if stamp not in times:
                times[stamp] = _parse_time(stamp)
            row_type = row[i_type] if i_type < width else ""
            parsed = numbers(row, get, row_type, terms)
            gross, fee, net, reserve = parsed or (0, 0, 0, 0)
            copy.write_row(
                (
                    line,
                    row_type,
                    row[i_ref] if i_ref < width else "",
                    row[i_psp] if i_psp < width else "",
                    currency,
                    gross,
                    fee,
                    net,
                    reserve,
                    parsed is None,
                    row[i_batch] if i_batch < width else "",
                    times[stamp],
                )
            )
    latest = max(filter(None, times.values()), default=None)
    return line - 1, currencies, latest


def _classify_params(provider: str, currencies: set[str]) -> dict[str, Any]:
    rules = sorted(_ROW_RULES.items())
    known = sorted(c for c in currencies if c and len(c) <= 5 and c.isalpha())
    accounts: list[tuple[str, Any]] = []
    for currency in known:
        with contextlib.suppress(DomainError):  # an unknown currency matches no payment
            accounts.append((currency, clearing_account(provider, currency)))
    return {
        "rt": [name for name, _ in rules],
        "kind": [r[0] for _, r in rules],
        "statuses": [",".join(sorted(r[1])) for _, r in rules],
        "suffix": [r[2] for _, r in rules],
        "side": [r[3] for _, r in rules],
        "sign": [r[4] for _, r in rules],
        "cur": [c for c, _ in accounts],
        "acct": [a for _, a in accounts],
        "provider": provider,
    }


def _problem(
    terms: SettlementTerms,
    problem: str,
    line: int,
    row_type: str,
    reference: str,
    psp_id: str,
    currency: str,
    gross: int,
    fee: int,
    net: int,
    reserve: int,
    kind: str | None,
    sign: int | None,
    suffix: str | None,
    payment_currency: str | None,
    payment_amount: int | None,
    payment_status: str | None,
    posted: int,
    cum: Any,
    settled_at: datetime | None,
    days: int | None,
    paid_at: datetime | None,
) -> dict[str, str]:
    """Word an exception exactly as the row loop (``reconciliation.word``) does."""
    expected = None
    if terms.fee_bps is not None:
        expected = gross * terms.fee_bps // 10_000 + terms.fee_fixed
    return word(
        "timing" if problem == "timing" else problem,
        int(line),
        reference,
        row_type=row_type,
        psp_id=psp_id,
        kind=kind,
        currency=currency,
        payment_currency=payment_currency,
        net=net,
        sign=sign,
        gross=gross,
        fee=fee,
        reserve=reserve,
        expected=expected,
        tolerance=terms.fee_tolerance,
        payment_status=payment_status,
        key=f"{kind}:{reference}:{suffix}",
        posted=int(posted),
        payment_amount=payment_amount,
        cum=int(cum) if cum is not None else None,
        settled=settled_at,
        days=days,
        paid=paid_at,
        window=terms.settlement_days,
    )


def _missing(reference: str, amount: int, currency: str, confirmed_at: datetime) -> dict[str, str]:
    return {
        "kind": "missing_at_psp",
        "reference": reference,
        "detail": f"Deposit {reference} ({amount} {currency}) confirmed "
        f"{confirmed_at:%Y-%m-%d %H:%M} is not in any settlement.",
    }
