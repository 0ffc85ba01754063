"""Ledger benchmark: run as ``brokerdesk bench ledger [--json] [--seconds N]``.

Three phases on the configured database engine (a fresh benchmark database):

1. **latency** — one client posts deposits one after another (one transaction each):
   ``p50_ms`` and ``p99_ms`` are the latency of one deposit posting;
2. **one per commit** — worker threads in several processes each post deposits through
   ``services.post_transfer``, one transaction per transfer, all on one hot PSP clearing
   account;
3. **group commit** — the same workload through ``grouping.GroupCommitter``: concurrent
   requests share a transaction; ``transfers_per_s`` is the best of phases 2 and 3 (both are
   reported, with their latencies under that load);
4. **batched** — one process posts large batches of two-leg deposits with
   ``services.post_batch``: ``batched_entries_per_s``; then (``batched.fan_out``, at most 5 s)
   batches of 50-leg fan-out transfers, as a commission run posts them.

Then ``replay_ledger`` rebuilds every balance from the entries: ``replay_differences``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brokerdesk.settings")
    import django

    django.setup()
    from brokerdesk.core.runtime import tune_gc

    tune_gc()


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _seed(accounts: int) -> tuple[list[str], str]:
    """Create wallets and the PSP clearing account; return their ids as strings."""
    from brokerdesk.ledger import services
    from brokerdesk.ledger.models import Bucket, LedgerAccount, OwnerType

    clearing = services.system_account("psp_clearing", "USD", qualifier="bench")
    now = services.clock.now()
    LedgerAccount.objects.bulk_create(
        [
            LedgerAccount(
                owner_type=OwnerType.CLIENT,
                owner_id=f"bench-{i}",
                currency="USD",
                bucket=Bucket.CASH,
                no_negative=True,
                name=f"bench-{i}",
                created_at=now,
            )
            for i in range(accounts)
        ],
        ignore_conflicts=True,
    )
    wallets = [
        str(a)
        for a in LedgerAccount.objects.filter(owner_id__startswith="bench-").values_list(
            "id", flat=True
        )
    ]
    return wallets, str(clearing.id)


def _deposit_request(tag: str, n: int, wallet: str, clearing: str) -> Any:
    from uuid import UUID

    from brokerdesk.ledger.services import TransferRequest, credit, debit

    amount = 1 + (n * 7919) % 100_000
    return TransferRequest(
        idempotency_key=f"{tag}-{n}",
        kind="deposit",
        currency="USD",
        legs=(debit(UUID(clearing), amount), credit(UUID(wallet), amount)),
        metadata={"psp": "bench"},
    )


def _worker_process(
    mode: str,
    index: int,
    threads: int,
    seconds: float,
    wallets: list[str],
    clearing: str,
    out: Any,
) -> None:
    """One process: ``threads`` threads posting deposits for ``seconds``."""
    _setup_django()
    if os.environ.get("BENCH_SWITCH_INTERVAL"):
        sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))
    from django.db import connection

    from brokerdesk.core.errors import DomainError
    from brokerdesk.ledger import services
    from brokerdesk.ledger.grouping import GroupCommitter

    committer = GroupCommitter(max_batch=400, max_wait_ms=2.0) if mode == "group" else None
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: list[int] = [0] * threads
    stop_at = time.monotonic() + seconds

    def post(request: Any) -> None:
        if committer is not None:
            committer.post(request)
        else:
            services.post_transfer(request)

    def loop(t: int) -> None:
        rng = random.Random(index * 1000 + t)
        n = 0
        try:
            while time.monotonic() < stop_at:
                request = _deposit_request(f"{mode}-{index}-{t}", n, rng.choice(wallets), clearing)
                n += 1
                started = time.perf_counter()
                try:
                    post(request)
                except DomainError:
                    errors[t] += 1
                    continue
                latencies[t].append((time.perf_counter() - started) * 1000)
        finally:
            connection.close()

    pool = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
    began = time.time()  # wall clock: comparable across the worker processes
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    ended = time.time()
    if committer is not None:
        committer.close()
    out.put(([x for lat in latencies for x in lat], sum(errors), began, ended))


def _concurrent_phase(
    mode: str, processes: int, threads: int, seconds: float, wallets: list[str], clearing: str
) -> dict[str, Any]:
    from django.db import connections

    if mode == "single":  # a connection per thread: stay within the server's limit
        threads = min(threads, max(1, (_max_connections() - 10) // processes))
    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker_process,
            args=(mode, i, threads, seconds, wallets, clearing, out),
        )
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    # The posting window: from the first process's threads starting to the last one's ending
    # (process start-up and Django set-up are not posting time).
    elapsed = max(r[3] for r in results) - min(r[2] for r in results)
    latencies = [x for lat, *_ in results for x in lat]
    return {
        "threads": processes * threads,
        "transfers": len(latencies),
        "errors": sum(r[1] for r in results),
        "seconds": round(elapsed, 2),
        "per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(_percentile(latencies, 0.50), 3),
        "p99_ms": round(_percentile(latencies, 0.99), 3),
        "mean_ms": round(statistics.fmean(latencies), 3) if latencies else 0.0,
    }


def _batched_phase(
    seconds: float, batch_size: int, wallets: list[str], clearing: str
) -> dict[str, Any]:
    from brokerdesk.ledger import services

    entries = transfers = batches = 0
    n = 0
    busy = 0.0  # time spent inside post_batch only; building requests is the caller's work
    while busy < seconds:
        units = []
        for _ in range(batch_size):
            units.append([_deposit_request("batch", n, wallets[n % len(wallets)], clearing)])
            n += 1
        started = time.perf_counter()
        outcomes = services.post_batch(units)
        busy += time.perf_counter() - started
        ok = sum(
            1 for (o,) in outcomes if isinstance(o, services.TransferResult) and not o.replayed
        )
        transfers += ok
        entries += 2 * ok
        batches += 1
    elapsed = busy
    return {
        "batches": batches,
        "transfers": transfers,
        "entries": entries,
        "entries_per_s": round(entries / elapsed, 1),
    }


def _fan_out_phase(seconds: float, legs: int, wallets: list[str], clearing: str) -> dict[str, Any]:
    """Batches of fan-out transfers (one debit, ``legs - 1`` credits: a commission or
    interest run) through ``services.post_batch``: entries per second when the per-transfer
    costs (key, fingerprint, event) are shared by many entries."""
    from uuid import UUID

    from brokerdesk.ledger import services

    entries = n = 0
    busy = 0.0
    while busy < seconds:
        units = []
        for _ in range(max(1, 2_000 // legs)):
            payees = [wallets[(n * legs + k) % len(wallets)] for k in range(legs - 1)]
            amounts = [1 + (n + k) % 1_000 for k in range(legs - 1)]
            units.append(
                [
                    services.TransferRequest(
                        idempotency_key=f"fan-{n}",
                        kind="commission_run",
                        currency="USD",
                        legs=(
                            services.debit(UUID(clearing), sum(amounts)),
                            *(
                                services.credit(UUID(w), a)
                                for w, a in zip(payees, amounts, strict=True)
                            ),
                        ),
                    )
                ]
            )
            n += 1
        started = time.perf_counter()
        outcomes = services.post_batch(units)
        busy += time.perf_counter() - started
        entries += sum(
            legs for (o,) in outcomes if isinstance(o, services.TransferResult) and not o.replayed
        )
    return {
        "legs_per_transfer": legs,
        "entries": entries,
        "entries_per_s": round(entries / busy, 1),
    }


def _max_connections() -> int:
    """The server's connection limit (PostgreSQL), or no practical limit."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return 10_000
    with connection.cursor() as cursor:
        cursor.execute("SHOW max_connections")
        return int(cursor.fetchone()[0])


def _vacuum() -> None:
    """Between phases on PostgreSQL, what autovacuum does on a server that runs it (this
    machine's is off): clear the dead versions a phase's balance updates left on the hot
    accounts, so that a phase is not measured on the previous one's debris. Not timed."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM (ANALYZE)")


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(prog="brokerdesk bench ledger")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--seconds", type=float, default=30.0, help="total time of the 3 phases")
    parser.add_argument("--processes", type=int, default=2, help="worker processes")
    parser.add_argument("--threads", type=int, default=16, help="threads per worker process")
    parser.add_argument("--accounts", type=int, default=10_000, help="client wallets")
    parser.add_argument("--batch-size", type=int, default=2_000, help="transfers per batch")
    parser.add_argument(
        "--only",
        choices=["latency", "single", "group", "batched"],
        help="run one phase for all the time",
    )
    args = parser.parse_args(argv)

    _setup_django()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    wallets, clearing = _seed(args.accounts)
    phase = args.seconds / (1 if args.only else 4)
    skipped: dict[str, Any] = {"per_s": 0, "p50_ms": None, "p99_ms": None, "entries_per_s": None}
    latency = one = group = batched = skipped
    if args.only in (None, "latency"):
        latency = _concurrent_phase("latency", 1, 1, phase, wallets, clearing)
    if args.only in (None, "single"):
        _vacuum()
        one = _concurrent_phase("single", args.processes, args.threads, phase, wallets, clearing)
    if args.only in (None, "group"):
        _vacuum()
        group = _concurrent_phase("group", args.processes, args.threads, phase, wallets, clearing)
    if args.only in (None, "batched"):
        _vacuum()
        batched = _batched_phase(phase, args.batch_size, wallets, clearing)
        batched["fan_out"] = _fan_out_phase(min(phase, 5.0), 50, wallets, clearing)

    from brokerdesk.ledger.queries import replay_ledger

    report, replay_s = _timed(replay_ledger)
    figures = {
        "database": connection.vendor,
        "transfers_per_s": max(one["per_s"], group["per_s"]),
        "p50_ms": latency["p50_ms"],
        "p99_ms": latency["p99_ms"],
        "batched_entries_per_s": batched["entries_per_s"],
        "replay_differences": len(report.differences) + len(report.unbalanced_transfers),
        "latency": latency,
        "one_per_commit": one,
        "group_commit": group,
        "batched": batched,
        "replay": {
            "accounts": report.accounts,
            "transfers": report.transfers,
            "entries": report.entries,
            "seconds": round(replay_s, 2),
        },
        "settings": {
            "seconds": args.seconds,
            "processes": args.processes,
            "threads_per_process": args.threads,
            "accounts": args.accounts,
            "batch_size": args.batch_size,
            "cpus": os.cpu_count(),
        },
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>24}: {value}")
    return 0 if figures["replay_differences"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
