"""``brokerdesk drill --json`` end to end, and the parts of the drill that can be checked alone.

The end-to-end test runs the real command (a child process starting the simulator, bridge,
worker and sandbox PSP on private servers) at a small size. The restart drills exist only on
PostgreSQL with Redis Streams, so the suite's two runs split the drills between them to stay
quick: the SQLite run kills the worker and slows the consumer; the PostgreSQL run crashes
PostgreSQL and Redis. (``bridge_kill`` runs in ``brokerdesk drill``; the bridge's SIGKILL is
also covered on both databases by ``tests/trading/test_pipeline_kill.py``.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from brokerdesk.core.drill import DrillResult, Environment, table
from brokerdesk.core.drills import invariants
from brokerdesk.core.drills.slow_worker import DelayFile, slowed

STANDARD = {
    "journeys_completed",
    "replay_ledger",
    "deals_complete",
    "no_duplicate_postings",
    "reconciliations_clean",
    "audit_chain",
}


def run_drill_command(*drills: str) -> list[dict[str, Any]]:
    """``brokerdesk drill --json --size 2`` for ``drills``; the parsed JSON list."""
    argv = [sys.executable, "-m", "brokerdesk.cli", "drill", "--json", "--size", "2"]
    argv += ["--rate", "40"]
    for name in drills:
        argv += ["--only", name]
    completed = subprocess.run(  # noqa: S603
        argv, capture_output=True, text=True, timeout=400, env=dict(os.environ), check=False
    )
    assert completed.stdout.strip(), completed.stderr[-4000:]
    report: list[dict[str, Any]] = json.loads(completed.stdout)
    broken = [c for d in report for c in d["invariants"] if not c["held"]]
    assert completed.returncode == 0, (broken, completed.stderr[-4000:])
    return report


def test_drills_recover_with_every_invariant_held(on_postgres: bool) -> None:
    # Given the drills this database run covers,
    drills = (
        ("postgres_restart", "redis_restart")
        if on_postgres
        else ("worker_kill", "slow_consumer", "redis_restart")
    )
    # when `brokerdesk drill --json` runs them with money moving and deals flowing,
    report = run_drill_command(*drills)
    by_name = {d["drill"]: d for d in report}
    assert set(by_name) == set(drills)
    for name in drills:
        drill = by_name[name]
        if not on_postgres and name == "redis_restart":
            # then a drill that needs a server is reported as not applicable, with the reason,
            assert drill["applicable"] is False and drill["invariants_held"] is None
            assert "outbox" in drill["reason"]
            continue
        # then every other drill checked every invariant after its fault, and each held,
        assert drill["applicable"] is True and drill["fault"]
        assert set(drill["invariants_checked"]) >= STANDARD
        assert drill["invariants_held"] is True
        assert all(c["held"] for c in drill["invariants"]), drill["invariants"]
        # with money really moved (two journeys) and deals really flowing through the fault.
        assert drill["details"]["journeys"] == 2
        assert drill["details"]["deals"] > 0 and drill["details"]["drained"] is True
        assert drill["durations"]["total_s"] > 0
    if "slow_consumer" in by_name:
        slow = by_name["slow_consumer"]["details"]
        assert slow["backlog_max"] > slow["backlog_before"]
        assert "lag_grew_then_drained" in by_name["slow_consumer"]["invariants_checked"]
    if on_postgres:
        assert by_name["postgres_restart"]["details"]["postgres_back_after_s"] > 0
        assert by_name["redis_restart"]["details"]["redis_back_after_s"] > 0


def test_restart_drills_are_not_applicable_without_a_server(tmp_path: Path) -> None:
    env = Environment(tmp_path, database="sqlite", bus="outbox")
    assert "SQLite" in env.not_applicable("postgres_restart")
    assert "outbox" in env.not_applicable("redis_restart")
    assert env.not_applicable("worker_kill") == ""
    # a PostgreSQL database without local binaries cannot be crashed safely either
    pg = Environment(tmp_path, database="postgresql", bus="redis")
    assert "binaries" in pg.not_applicable("postgres_restart")
    assert "redis-server" in pg.not_applicable("redis_restart")


class _Pipe:
    def __init__(self, figures: dict[str, Any]) -> None:
        self.figures = figures

    def compare(self) -> dict[str, Any]:
        return self.figures


class _Stack:
    def __init__(self, figures: dict[str, Any]) -> None:
        self.pipe = _Pipe(figures)


@pytest.mark.parametrize(
    ("change", "held"),
    [
        ({}, True),
        ({"lost": 1, "stored": 9}, False),
        ({"duplicated": 1, "stored": 11}, False),
        ({"checksum_match": False}, False),
    ],
)
def test_deals_complete_fails_on_any_loss_duplicate_or_checksum(
    change: dict[str, Any], held: bool
) -> None:
    figures = {"deals": 10, "stored": 10, "lost": 0, "duplicated": 0, "unexpected": 0}
    figures["checksum_match"] = True
    check = invariants.deals_complete(_Stack({**figures, **change}))  # type: ignore[arg-type]
    assert check.held is held
    assert "10 in the platform's log" in check.detail


def test_journeys_completed_reports_the_failures() -> None:
    from brokerdesk.core.drills.stack import JourneyResult

    ok = JourneyResult("a")
    failed = JourneyResult("b", error="TimeoutError: deposit confirmed: not reached in 90 s")
    check = invariants.journeys_completed([ok, failed])
    assert not check.held
    assert check.detail.startswith("1/2 journeys finished")
    assert "deposit confirmed" in check.detail


def test_delay_file_slows_each_message_and_zero_lifts_it(tmp_path: Path) -> None:
    path = tmp_path / "delay"
    seen: list[int] = []
    handler = slowed(lambda messages: seen.append(len(messages)), DelayFile(path, every_s=0))
    path.write_text("20")  # ms per message
    import time

    started = time.monotonic()
    handler([object()] * 5)
    slow = time.monotonic() - started
    path.write_text("0")
    started = time.monotonic()
    handler([object()] * 5)
    fast = time.monotonic() - started
    assert seen == [5, 5]
    assert slow >= 0.1 > fast


def test_table_shows_broken_invariants_and_not_applicable_drills() -> None:
    broken = DrillResult(
        "worker_kill",
        "SIGKILL",
        True,
        invariants_checked=["deals_complete"],
        invariants_held=False,
        invariants=[{"name": "deals_complete", "held": False, "detail": "lost 3"}],
        details={
            "deals": 10,
            "journeys": 2,
            "journeys_finished_before_fault": 0,
            "environment": "a fresh SQLite file, the outbox bus",
        },
        durations={"fault_and_recovery_s": 1.0, "drain_s": 2.0, "total_s": 9.0},
    )
    skipped = DrillResult("redis_restart", "crash", False, reason="the bus is outbox")
    text = table([broken, skipped])
    assert "BROKEN" in text and "0/1" in text
    assert "worker_kill: BROKEN deals_complete: lost 3" in text
    assert "10 deals, 2 journeys (0 finished before the fault)" in text
    assert "redis_restart" in text and "n/a" in text and "the bus is outbox" in text
