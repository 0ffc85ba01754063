"""The invariants every drill checks once the system has recovered from its fault.

Each check returns a :class:`Check` (name, held, detail). They read through the modules'
queries where one exists and otherwise with read-only SQL, as the benchmarks do; none of them
writes anything except the reconciliation runs, which is what reconciliation is.

* ``replay_ledger`` — every balance rebuilt from the entries equals the stored one, every
  transfer balances, the per-account hash chains hold (``ledger.queries.replay_ledger``);
* ``deals_complete`` — the stored deals are exactly the simulator's own deal log: none lost,
  none duplicated, none unexpected, same checksum;
* ``no_duplicate_postings`` — ledger idempotency keys unique; every drill client's wallet
  holds exactly what one deposit, one transfer each way and one withdrawal leave; each
  wallet↔trading transfer is posted once in the ledger and is exactly one balance deal on the
  platform, and each trading account's platform balance is what the transfers moved;
* ``reconciliations_clean`` — the platform-clearing reconciliation against the platform's
  balance deals and the sandbox PSP's settlement file reconciliation find no exception;
* ``audit_chain`` — every audit chain verifies.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection

from brokerdesk.core.drills.stack import (
    CURRENCY,
    DEPOSIT,
    TO_TRADING,
    TO_WALLET,
    WITHDRAW,
    Client,
    DrillStack,
    JourneyResult,
)


@dataclass(frozen=True)
class Check:
    """One invariant's outcome."""

    name: str
    held: bool
    detail: str


def _rows(sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return list(cursor.fetchall())


def replay_ledger() -> Check:
    """Every balance rebuilt from the entries equals the stored one."""
    from brokerdesk.ledger.queries import replay_ledger as replay

    report = replay()
    detail = (
        f"{report.transfers} transfers, {report.entries} entries, "
        f"{len(report.differences)} differences, {len(report.unbalanced_transfers)} unbalanced"
    )
    return Check("replay_ledger", report.clean, detail)


def deals_complete(stack: DrillStack) -> Check:
    """Stored deals equal the simulator's deal log (count, tickets and checksum)."""
    result = stack.pipe.compare()
    held = (
        result["lost"] == 0
        and result["duplicated"] == 0
        and result["unexpected"] == 0
        and bool(result["checksum_match"])
        and result["stored"] == result["deals"]
    )
    detail = (
        f"{result['deals']} in the platform's log, {result['stored']} stored, "
        f"lost {result['lost']}, duplicated {result['duplicated']}, "
        f"unexpected {result['unexpected']}, "
        f"checksum {'match' if result['checksum_match'] else 'MISMATCH'}"
    )
    return Check("deals_complete", held, detail)


def no_duplicate_postings(stack: DrillStack, clients: list[Client]) -> Check:
    """Each deposit, transfer and withdrawal of the drill's clients moved money exactly once."""
    from brokerdesk.ledger import queries as ledger_queries
    from brokerdesk.ledger import services as ledger

    problems: list[str] = []
    (total, distinct), *_ = _rows(
        "SELECT count(*), count(DISTINCT idempotency_key) FROM ledger_transfer"
    )
    if total != distinct:
        problems.append(f"{total - distinct} repeated ledger idempotency keys")
    expected_cash = DEPOSIT - TO_TRADING + TO_WALLET - WITHDRAW
    for client in clients:
        for bucket, expected in (("cash", expected_cash), ("pending", 0), ("locked", 0)):
            account = ledger.wallet_account(client.client_id, CURRENCY, bucket)
            posted = ledger_queries.balance(account.id).posted
            if posted != expected:
                problems.append(f"client {client.client_id} {bucket} {posted} ≠ {expected}")
    wanted = {str(c.client_id) for c in clients}
    transfers = [
        row
        for row in _rows(
            "SELECT t.id, t.comment, t.client_id FROM trading_transfer t "
            "JOIN trading_account a ON a.id = t.account_id WHERE a.server = %s",
            [stack.pipe.server],
        )
        if str(row[2]) in wanted
    ]
    postings = Counter(
        key.split(":")[1]
        for (key,) in _rows(
            "SELECT idempotency_key FROM ledger_transfer WHERE idempotency_key LIKE %s",
            ["trading.transfer:%:post%"],
        )
    )
    comments = Counter(
        comment
        for (comment,) in _rows(
            "SELECT comment FROM trading_deal WHERE server = %s AND comment LIKE %s",
            [stack.pipe.server, "bd:%"],
        )
    )
    for transfer_id, comment, _client in transfers:
        tid = str(transfer_id)
        if len(tid) == 32:
            tid = f"{tid[:8]}-{tid[8:12]}-{tid[12:16]}-{tid[16:20]}-{tid[20:]}"
        if postings[tid] != 1:
            problems.append(f"transfer {tid} posted {postings[tid]} times")
        if comments[comment] != 1:
            problems.append(f"transfer {tid} is {comments[comment]} balance deals on the platform")
    for client in clients:
        balance = stack.port.account_state(client.account.login).balance
        if balance != TO_TRADING - TO_WALLET:
            problems.append(f"login {client.account.login} platform balance {balance}")
    detail = "; ".join(problems[:5]) or (
        f"{len(clients)} clients: wallets, {len(transfers)} transfers and platform balances exact"
    )
    return Check("no_duplicate_postings", not problems, detail)


def reconciliations_clean(stack: DrillStack) -> Check:
    """The platform-clearing and the PSP settlement reconciliations find nothing."""
    from brokerdesk.core import clock
    from brokerdesk.payments.reconciliation import reconcile_settlement
    from brokerdesk.trading.reconciliation import reconcile_platform_clearing

    now = clock.now()
    run = reconcile_platform_clearing(
        stack.port,
        currency=CURRENCY,
        start=datetime.fromtimestamp(stack.started_at, tz=now.tzinfo) - timedelta(hours=1),
        end=now + timedelta(hours=1),
    )
    batch = stack.psp.settle(now=now + timedelta(seconds=5))
    report = reconcile_settlement(
        batch["csv"], provider="sandbox", source=f"drill:{batch['batch_id']}",
        missing_grace=timedelta(0),
    )  # fmt: skip
    held = run.exceptions == 0 and report.clean
    detail = (
        f"platform clearing: {run.matched} matched, {run.exceptions} exceptions; "
        f"settlement: {report.rows} rows, {report.matched} matched, "
        f"{len(report.exceptions)} exceptions"
    )
    if report.exceptions:
        detail += " (" + ", ".join(sorted({e["kind"] for e in report.exceptions})) + ")"
    return Check("reconciliations_clean", held, detail)


def audit_chain() -> Check:
    """Every audit chain verifies."""
    from brokerdesk.core.audit import verify_chain

    report = verify_chain()
    detail = f"{report.entries} entries" + (
        ""
        if report.ok
        else f"; chain {report.chain} breaks at {report.first_bad_seq}: {report.problem}"
    )
    return Check("audit_chain", report.ok, detail)


def journeys_completed(results: list[JourneyResult]) -> Check:
    """Every client journey (deposit, transfers, withdrawal) finished."""
    failed = [r for r in results if r.error]
    detail = f"{len(results) - len(failed)}/{len(results)} journeys finished"
    if failed:
        detail += "; " + "; ".join(r.error for r in failed[:3])
    return Check("journeys_completed", not failed, detail)


def standard(stack: DrillStack, clients: list[Client], results: list[JourneyResult]) -> list[Check]:
    """The checks every drill runs, in order."""
    return [
        journeys_completed(results),
        replay_ledger(),
        deals_complete(stack),
        no_duplicate_postings(stack, clients),
        reconciliations_clean(stack),
        audit_chain(),
    ]
