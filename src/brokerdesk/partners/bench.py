"""Partners benchmark: ``brokerdesk bench partners [--json] [--ibs N] [--levels L]``.

Builds an IB tree of ``--ibs`` IBs over ``--levels`` levels (each level about twice as wide
as the one above it; parents drawn at random from the level above), bulk-inserting the IBs and
their closure rows (``COPY`` on PostgreSQL), then measures:

* ``subtree_*``: the subtree of a random IB (ids and depths, all rows fetched);
* ``top_subtree_*``: the subtree of a random top-level IB (the largest subtrees);
* ``ancestors_*``: the upline of a random leaf IB;

each as p50/p99 milliseconds over ``--samples`` queries. It finishes with one ``move_subtree``
of a mid-level IB (timed) and a consistency check of the closure table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brokerdesk.settings")
    import django

    django.setup()
    from brokerdesk.core.runtime import tune_gc

    tune_gc()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def level_sizes(ibs: int, levels: int) -> list[int]:
    """How many IBs each level gets: doubling per level, at least one per level."""
    if ibs < levels:
        raise ValueError("need at least one IB per level")
    weights = [2**level for level in range(levels)]
    total = sum(weights)
    sizes = [max(1, ibs * w // total) for w in weights]
    sizes[-1] += ibs - sum(sizes)
    return sizes


def build_tree(
    ibs: int, levels: int, rng: random.Random
) -> tuple[list[tuple[UUID, UUID | None, int]], list[tuple[UUID, UUID, int]]]:
    """IB rows (id, parent, depth) and closure rows (ancestor, descendant, depth)."""
    from brokerdesk.core.ids import new_id

    nodes: list[tuple[UUID, UUID | None, int]] = []
    closure: list[tuple[UUID, UUID, int]] = []
    uplines: dict[UUID, list[UUID]] = {}  # node -> [self, parent, grandparent, ...]
    previous: list[UUID] = []
    for depth, size in enumerate(level_sizes(ibs, levels)):
        current = []
        for _ in range(size):
            node = new_id()
            parent = rng.choice(previous) if previous else None
            line = [node, *(uplines[parent] if parent else [])]
            uplines[node] = line
            nodes.append((node, parent, depth))
            closure.extend((a, node, d) for d, a in enumerate(line))
            current.append(node)
        previous = current
    return nodes, closure


def _copy(table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        raw: Any = cursor.cursor
        with raw.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def insert_tree(
    nodes: list[tuple[UUID, UUID | None, int]], closure: list[tuple[UUID, UUID, int]]
) -> None:
    """Bulk-insert IBs and closure rows (COPY on PostgreSQL, ``bulk_create`` elsewhere)."""
    from django.db import connection, transaction

    from brokerdesk.partners.models import IB, IBClosure

    now = datetime.now(UTC)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            _copy(
                IB._meta.db_table,
                ["id", "code", "name", "parent_id", "depth", "status", "currency", "created_at"],
                (
                    (n, f"bench-{i}", f"Bench IB {i}", p, d, "active", "USD", now)
                    for i, (n, p, d) in enumerate(nodes)
                ),
            )
            _copy(
                IBClosure._meta.db_table,
                ["ancestor_id", "descendant_id", "depth"],
                closure,
            )
        else:
            IB.objects.bulk_create(
                (
                    IB(
                        id=n,
                        code=f"bench-{i}",
                        name=f"Bench IB {i}",
                        parent_id=p,
                        depth=d,
                        created_at=now,
                    )
                    for i, (n, p, d) in enumerate(nodes)
                ),
                batch_size=2000,
            )
            IBClosure.objects.bulk_create(
                (IBClosure(ancestor_id=a, descendant_id=dd, depth=d) for a, dd, d in closure),
                batch_size=5000,
            )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {IB._meta.db_table}")
            cursor.execute(f"ANALYZE {IBClosure._meta.db_table}")


def _time_queries(
    fn: Callable[[UUID], object], targets: list[UUID]
) -> tuple[dict[str, float], int]:
    latencies: list[float] = []
    rows = 0
    for target in targets:
        started = time.perf_counter()
        result = fn(target)
        latencies.append((time.perf_counter() - started) * 1000)
        rows += len(result) if isinstance(result, list) else 0
    return (
        {
            "p50_ms": round(_percentile(latencies, 0.5), 3),
            "p99_ms": round(_percentile(latencies, 0.99), 3),
            "mean_ms": round(statistics.fmean(latencies), 3) if latencies else 0.0,
        },
        rows,
    )


def check_closure() -> int:
    """Closure rows that disagree with the parent links (0 when consistent)."""
    from brokerdesk.partners.models import IB, IBClosure

    parents = dict(IB.objects.values_list("id", "parent_id"))
    expected = 0
    for node in parents:
        cursor: UUID | None = node
        while cursor is not None:
            expected += 1
            cursor = parents[cursor]
    actual = IBClosure.objects.count()
    wrong_parent = (
        IBClosure.objects.filter(depth=1)
        .exclude(descendant__parent_id=models_f("ancestor_id"))
        .count()
    )
    return abs(expected - actual) + wrong_parent


def models_f(name: str) -> Any:
    """An ``F`` expression (kept apart so Django is imported only after setup)."""
    from django.db.models import F

    return F(name)


BENCH_RULES: dict[str, Any] = {
    "symbol_groups": {"FX": ["EUR*", "GBP*", "USD*"], "METALS": ["XAU*"]},
    "components": [
        {"type": "rebate", "rates": {"FX": 700, "METALS": 1000, "*": 300}},
        {"type": "revenue_share", "share_bps": 1000},
    ],
    "filters": {"min_holding_seconds": 60},
    "tiers": [
        {"min_volume": 0, "multiplier_bps": 10000},
        {"min_volume": 10_000_000, "multiplier_bps": 11000},
    ],
    "overrides": [2000, 1000, 500],
    "holdback_bps": 1000,
    "holdback_days": 30,
}


def accrual_phase(
    nodes: list[tuple[UUID, UUID | None, int]],
    deals: int,
    clients: int,
    batch: int,
    rng: random.Random,
    days: float = 1.0,
) -> dict[str, Any]:
    """Accrue ``deals`` closed deals of ``clients`` clients spread over the tree, closing
    evenly over ``days`` days, in batches of ``batch`` through ``accrue_deals``; then run them
    all again and count added rows."""
    from datetime import timedelta

    from brokerdesk.core.ids import new_id
    from brokerdesk.partners import accrual
    from brokerdesk.partners.deals import ClosedDeal
    from brokerdesk.partners.models import (
        Accrual,
        Attribution,
        Exclusion,
        Plan,
        PlanAssignment,
        PlanVersion,
    )
    from brokerdesk.partners.rules import ClientFacts

    start = datetime(2026, 1, 1, tzinfo=UTC)
    plan = Plan.objects.create(code="bench", name="Bench", currency="USD", created_at=start)
    PlanVersion.objects.create(
        plan=plan,
        number=1,
        valid_from=start,
        rules=BENCH_RULES,
        created_by="system:bench",
        created_at=start,
    )
    PlanAssignment.objects.bulk_create(
        (
            PlanAssignment(ib_id=n, plan=plan, valid_from=start, assigned_by="system:bench")
            for n, _, _ in nodes
        ),
        batch_size=5000,
    )
    ib_ids = [n for n, _, _ in nodes]
    client_ids = [new_id() for _ in range(clients)]
    Attribution.objects.bulk_create(
        (
            Attribution(
                client_id=c,
                ib_id=rng.choice(ib_ids),
                source="link",
                touched_at=start,
                attributed_at=start,
                updated_at=start,
                client_label="Bench C.",
                country="CY",
            )
            for c in client_ids
        ),
        batch_size=5000,
    )
    approved = ClientFacts(country="CY", kyc_state="approved")

    def facts(ids: Iterable[UUID]) -> dict[UUID, ClientFacts]:
        return dict.fromkeys(ids, approved)

    symbols = ["EURUSD", "GBPUSD", "USDJPY", "XAUUSD", "US30"]
    stream = []
    spacing = days * 86_400 / max(deals, 1)
    for i in range(deals):
        closed = start + timedelta(seconds=90 + round(spacing * i, 3))
        stream.append(
            ClosedDeal(
                server="bench",
                login=i % 10_000,
                deal=i + 1,
                closed_at=closed,
                symbol=rng.choice(symbols),
                volume=rng.choice([1000, 5000, 10_000, 100_000]),
                profit=rng.randint(-50_000, 50_000),
                commission=-700,
                swap=-10,
                currency="USD",
                group="real\\std",
                client_id=rng.choice(client_ids),
                opened_at=closed - timedelta(seconds=rng.choice([20, 600, 7200])),
            )
        )

    def run(part: list[ClosedDeal]) -> float:
        t0 = time.perf_counter()
        for k in range(0, len(part), batch):
            accrual.accrue_deals(part[k : k + batch], facts=facts)
        return time.perf_counter() - t0

    half = len(stream) // 2
    cold = run(stream[:half])  # opens the IBs' payable accounts as they first earn
    warm = run(stream[half:])
    seconds = cold + warm
    rows = Accrual.objects.count() + Exclusion.objects.count()
    rerun_seconds = run(stream)
    added = Accrual.objects.count() + Exclusion.objects.count() - rows
    from brokerdesk.partners.queries import orphan_rows

    return {
        "deals": deals,
        "clients": clients,
        "batch": batch,
        "days": days,
        "seconds": round(seconds, 2),
        "deals_per_s": round(deals / max(seconds, 1e-9)),
        "first_half_deals_per_s": round(half / max(cold, 1e-9)),
        "second_half_deals_per_s": round((deals - half) / max(warm, 1e-9)),
        "accruals": Accrual.objects.count(),
        "exclusions": Exclusion.objects.count(),
        "rerun_seconds": round(rerun_seconds, 2),
        "rerun_added_rows": added,
        "orphan_rows": orphan_rows(),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print its figures (one JSON object with ``--json``)."""
    parser = argparse.ArgumentParser(prog="brokerdesk bench partners")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--ibs", type=int, default=20_000, help="IBs in the tree")
    parser.add_argument("--levels", type=int, default=10, help="levels of the tree")
    parser.add_argument("--samples", type=int, default=500, help="queries per measurement")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--deals", type=int, default=5_000, help="closed deals to accrue")
    parser.add_argument("--clients", type=int, default=5_000, help="attributed clients")
    parser.add_argument(
        "--days",
        type=float,
        default=1.0,
        help="the deals close evenly over this many days (default: one trading day)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        help="deals per accrual batch (default: the accrual consumer's batch size)",
    )
    args = parser.parse_args(argv)
    _setup_django()
    from django.core.management import call_command
    from django.db import connection

    from brokerdesk.partners import hierarchy
    from brokerdesk.partners.consumers import ACCRUAL_BATCH_SIZE

    call_command("migrate", verbosity=0)
    rng = random.Random(args.seed)
    started = time.perf_counter()
    nodes, closure = build_tree(args.ibs, args.levels, rng)
    built = time.perf_counter()
    insert_tree(nodes, closure)
    inserted = time.perf_counter()

    all_ids = [n for n, _, _ in nodes]
    tops = [n for n, _, d in nodes if d == 0]
    leaves = [n for n, _, d in nodes if d == args.levels - 1]
    samples = args.samples
    subtree, subtree_rows = _time_queries(
        hierarchy.subtree, [rng.choice(all_ids) for _ in range(samples)]
    )
    top_subtree, top_rows = _time_queries(
        hierarchy.subtree, [rng.choice(tops) for _ in range(max(1, samples // 5))]
    )
    upline, upline_rows = _time_queries(
        hierarchy.ancestors, [rng.choice(leaves) for _ in range(samples)]
    )
    mid = [n for n, _, d in nodes if d == args.levels // 2]
    move_target = rng.choice(mid)
    new_parent = rng.choice([t for t in tops if not hierarchy.is_within(move_target, t)])
    moved_size = hierarchy.subtree_size(move_target)
    t0 = time.perf_counter()
    hierarchy.move_subtree(move_target, new_parent, by="system:bench", reason="benchmark move")
    move_ms = (time.perf_counter() - t0) * 1000
    differences = check_closure()
    accruals = (
        accrual_phase(
            nodes, args.deals, args.clients, args.batch or ACCRUAL_BATCH_SIZE, rng, args.days
        )
        if args.deals
        else {}
    )
    figures = {
        "engine": connection.vendor,
        # the headline figures issue 6 names, from the accrual phase
        "deals": accruals.get("deals", 0),
        "seconds": accruals.get("seconds", 0),  # accruing the deals (the rerun apart)
        "deals_per_s": accruals.get("deals_per_s", 0),
        "rerun_added_rows": accruals.get("rerun_added_rows", 0),
        "ibs": args.ibs,
        "levels": args.levels,
        "closure_rows": len(closure),
        "build_seconds": round(built - started, 3),
        "insert_seconds": round(inserted - built, 3),
        "insert_rows_per_s": round((len(nodes) + len(closure)) / max(inserted - built, 1e-9)),
        "samples": samples,
        "subtree": {**subtree, "avg_rows": round(subtree_rows / samples, 1)},
        "top_subtree": {**top_subtree, "avg_rows": round(top_rows / max(1, samples // 5), 1)},
        "ancestors": {**upline, "avg_rows": round(upline_rows / samples, 1)},
        "move_subtree_ms": round(move_ms, 2),
        "moved_subtree_size": moved_size,
        "closure_differences": differences,
        "accrual": accruals,
        "total_seconds": round(time.perf_counter() - started, 2),  # the whole benchmark
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>22}: {value}")
    failed = differences or accruals.get("rerun_added_rows") or accruals.get("orphan_rows")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
