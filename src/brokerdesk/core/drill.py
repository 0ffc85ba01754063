"""Fault drills: ``brokerdesk drill [--json] [--size N] [--rate R] [--only NAME]``.

Each drill runs the real system — ``brokerdesk simulator mt5`` → ``brokerdesk bridge`` → bus →
``brokerdesk worker`` (every consumer, the relay, the periodic jobs), the sandbox PSP, and
``--size`` client journeys moving money (card deposit, wallet → trading account → wallet,
withdrawal paid out) — injects one fault while money moves and deals flow, waits for the
system to recover, and then checks the invariants (:mod:`brokerdesk.core.drills.invariants`):
ledger replay clean, deals complete, no duplicate postings, reconciliations clean, audit chain
verified.

=================== ===========================================================================
``worker_kill``     SIGKILL of ``brokerdesk worker`` mid-stream, restarted a second later
``bridge_kill``     SIGKILL of ``brokerdesk bridge`` mid-stream, restarted a second later
``redis_restart``   Redis (the bus) crashes (SIGKILL) and comes back from its append-only file
``postgres_restart`` PostgreSQL crashes (``pg_ctl stop -m immediate``) and recovers from WAL
``slow_consumer``   the ingest consumer is slowed (injected per-message delay): the backlog
                    grows, then the delay is lifted and the backlog drains
=================== ===========================================================================

Nothing shared is touched: the drill runs in its own data. On PostgreSQL it starts a private
cluster (``initdb``/``pg_ctl`` from the local binaries, a temporary directory, a free port),
with Redis Streams a private ``redis-server`` (append-only file, ``appendfsync always``); both
are removed at the end. Without local PostgreSQL binaries it uses a fresh ``<name>_drill``
database on the configured server and skips ``postgres_restart``; without ``redis-server`` a
private stream prefix on the configured Redis and skips ``redis_restart``. On SQLite (the
embedded default, outbox bus) the restart drills do not apply and are reported as such.

The command itself (:mod:`brokerdesk.core.management.commands.drill`) runs :func:`main` in a
child process, because the database and bus must be chosen before Django starts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

DRILLS = ("worker_kill", "bridge_kill", "redis_restart", "postgres_restart", "slow_consumer")

FAULTS = {
    "worker_kill": "SIGKILL of brokerdesk worker mid-stream, restarted after 1 s",
    "bridge_kill": "SIGKILL of brokerdesk bridge mid-stream, restarted after 1 s",
    "redis_restart": "Redis crash (SIGKILL), back after 1 s from its append-only file",
    "postgres_restart": "PostgreSQL crash (pg_ctl stop -m immediate), back after 1 s",
    "slow_consumer": "ingest consumer slowed by an injected per-message delay, then released",
}

#: Duplicated and reordered platform events, as a real trade server's feed can have.
PLATFORM_FAULTS = "duplicate=0.03,reorder=0.03"


@dataclass
class Environment:
    """Where the drill runs: its database and bus, and the private servers it owns."""

    workdir: Path
    database: str = "sqlite"
    bus: str = "outbox"
    postgres: Any = None  # PrivatePostgres when the drill owns the database server
    redis: Any = None  # PrivateRedis when the drill owns the bus server
    notes: list[str] = field(default_factory=list)

    def not_applicable(self, name: str) -> str:
        """Why drill ``name`` cannot run here ("" when it can)."""
        if name == "postgres_restart":
            if self.database != "postgresql":
                return "the database is SQLite (embedded): there is no server to restart"
            if self.postgres is None:
                return "no local PostgreSQL binaries (initdb, pg_ctl) for a private cluster"
        if name == "redis_restart":
            if self.bus != "redis":
                return f"the bus is {self.bus}, not Redis Streams"
            if self.redis is None:
                return "no local redis-server for a private Redis"
        return ""

    def describe(self) -> str:
        """Where the drills ran, in words."""
        database = {
            "sqlite": "a fresh SQLite file",
            "postgresql": "a private PostgreSQL cluster" if self.postgres else "PostgreSQL",
        }[self.database]
        bus = {"redis": "Redis Streams", "outbox": "the outbox bus", "nats": "NATS JetStream"}
        where = f"{database}, {bus[self.bus]}" + (
            " on a private redis-server" if self.redis else ""
        )
        return "; ".join([where, *self.notes])

    def close(self) -> None:
        """Stop the private servers."""
        for server in (self.redis, self.postgres):
            if server is not None:
                server.stop()


@dataclass
class DrillResult:
    """One drill's report."""

    drill: str
    fault: str
    applicable: bool
    invariants_checked: list[str] = field(default_factory=list)
    invariants_held: bool | None = None
    invariants: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    reason: str = ""


# --- environment ---------------------------------------------------------------------------------


def prepare_environment(workdir: Path) -> Environment:
    """Choose (and start) the drill's database and bus from the configured ones; sets the
    environment variables Django and the child processes will read."""
    env = Environment(workdir)
    try:
        _choose_servers(env)
    except BaseException:
        env.close()  # a server started before the failure must not outlive the drill
        raise
    return env


def _choose_servers(env: Environment) -> None:
    """Start the private servers the configured database and bus call for."""
    from brokerdesk.core.drills.services import (
        PrivatePostgres,
        PrivateRedis,
        postgres_bin_dir,
        redis_server_path,
    )

    os.environ["BROKERDESK_DATA_DIR"] = str(env.workdir / "data")
    os.environ.pop("SQLITE_NAME", None)
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        env.database = "postgresql"
        bin_dir = postgres_bin_dir()
        if bin_dir is not None:
            env.postgres = PrivatePostgres(bin_dir).start()
            os.environ["DATABASE_URL"] = env.postgres.url
        else:
            os.environ["DATABASE_URL"] = _fresh_database(url)
            env.notes.append("fresh database on the configured PostgreSQL server")
    else:
        os.environ.pop("DATABASE_URL", None)
    bus_url = os.environ.get("BUS_URL", "outbox")
    scheme = urlsplit(bus_url).scheme or bus_url
    if scheme in {"redis", "rediss", "unix"}:
        env.bus = "redis"
        executable = redis_server_path()
        if executable is not None:
            env.redis = PrivateRedis(executable).start()
            os.environ["BUS_URL"] = env.redis.url
        else:
            os.environ["BUS_STREAM_PREFIX"] = f"drill{uuid.uuid4().hex[:8]}"
            env.notes.append("private stream prefix on the configured Redis")
    elif scheme in {"nats", "tls"}:
        env.bus = "nats"
        os.environ["BUS_STREAM_PREFIX"] = f"drill{uuid.uuid4().hex[:8]}"
    else:
        env.bus = "outbox"


def _fresh_database(url: str) -> str:
    """An empty ``<name>_drill`` database on the configured server; returns its URL."""
    import psycopg

    parts = urlsplit(url)
    name = f"{parts.path.lstrip('/') or 'brokerdesk'}_drill"
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}"))


# --- the drills ----------------------------------------------------------------------------------

Fault = Callable[[Any, Environment], dict[str, Any]]


def _kill_and_restart(process: str) -> Fault:
    """SIGKILL ``process`` of the pipeline, wait a second, start it again."""

    def inject(stack: Any, env: Environment) -> dict[str, Any]:
        stored = stack.stored()
        stack.pipe.kill(process)
        time.sleep(1.0)
        getattr(stack.pipe, f"start_{process}")()
        return {"deals_stored_at_kill": stored}

    return inject


def _restart_redis(stack: Any, env: Environment) -> dict[str, Any]:
    stored = stack.stored()
    seconds = env.redis.crash_and_restart(down_s=1.0)
    return {"deals_stored_at_crash": stored, "redis_back_after_s": round(seconds, 2)}


def _restart_postgres(stack: Any, env: Environment) -> dict[str, Any]:
    stored = stack.stored()
    seconds = env.postgres.crash_and_restart(down_s=1.0)
    return {"deals_stored_at_crash": stored, "postgres_back_after_s": round(seconds, 2)}


def _slow_consumer(stack: Any, env: Environment) -> dict[str, Any]:
    """Replace the worker by one whose ingest sleeps per message, let the backlog grow, lift
    the delay and wait for the backlog to drain (that worker, now at full speed, stays)."""
    from brokerdesk.core.drills.stack import Sampler, wait_for

    delay_file = env.workdir / "ingest-delay-ms"
    # the consumer's capacity becomes about half of what the platform sends (deal + position)
    delay_ms = max(1000.0 / stack.rate, 0.5)
    delay_file.write_text(f"{delay_ms:.3f}")
    with Sampler(stack) as sampler:
        time.sleep(1.5)
        baseline = max((b for _, b in sampler.samples), default=0)
        stack.pipe.stop("worker")
        stack.pipe.start_slow_worker(delay_file)
        slow_since = time.monotonic()
        time.sleep(4.0)
        grown = max((b for _, b in sampler.samples), default=0)
        delay_file.write_text("0")
        released = time.monotonic()
        limit = max(baseline, int(stack.rate))  # back to a second's worth of deals or less
        drained_s = wait_for(lambda: sampler.backlog() <= limit, 90, "backlog drained", 0.2)
        samples = list(sampler.samples)
    # the slowed worker (delay 0 now) stays: slow_consumer is always the last drill
    return {
        "delay_ms_per_message": round(delay_ms, 3),
        "backlog_before": baseline,
        "backlog_max": grown,
        "slow_for_s": round(released - slow_since, 2),
        "drained_after_s": round(drained_s, 2),
        "backlog_samples": samples[-40:],
        "_extra_checks": [
            {
                "name": "lag_grew_then_drained",
                "held": grown > max(2 * baseline, stack.rate / 2) and drained_s < 90,
                "detail": (
                    f"backlog {baseline} → {grown} deals while slowed, "
                    f"≤ {limit} again {drained_s:.1f} s after the delay was lifted"
                ),
            }
        ],
    }


INJECTORS: dict[str, Fault] = {
    "worker_kill": _kill_and_restart("worker"),
    "bridge_kill": _kill_and_restart("bridge"),
    "redis_restart": _restart_redis,
    "postgres_restart": _restart_postgres,
    "slow_consumer": _slow_consumer,
}


def run_drill(name: str, stack: Any, env: Environment, size: int) -> DrillResult:
    """Money moving and deals flowing → the fault → recovery → the invariants."""
    from brokerdesk.core.drills import invariants
    from brokerdesk.core.drills.stack import journeys_done, retrying, wait_for

    result = DrillResult(name, FAULTS[name], applicable=True)
    started = time.monotonic()
    tag = f"{name}-{uuid.uuid4().hex[:6]}"
    stack.resume_production()
    clients = stack.new_clients(tag, size)
    before = stack.stored()
    futures = stack.run_journeys(tag, clients)
    wait_for(lambda: stack.stored() >= before + stack.rate / 2, 60, "deals flowing")
    finished_before = sum(f.done() for f in futures)
    fault_at = time.monotonic()
    details = INJECTORS[name](stack, env)
    fault_s = time.monotonic() - fault_at
    journeys = journeys_done(futures, timeout=180)
    produced = stack.pause_production()
    recovered_at = time.monotonic()
    drained = True
    try:
        wait_for(lambda: stack.stored() >= produced, 60, "every deal stored")
    except TimeoutError:
        drained = False
    drain_s = time.monotonic() - recovered_at
    time.sleep(0.5)  # anything still in flight would show up as a duplicate
    checks_at = time.monotonic()
    checks = retrying("invariants", lambda: invariants.standard(stack, clients, journeys))
    extra = details.pop("_extra_checks", [])
    result.invariants = [asdict(c) for c in checks] + extra
    result.invariants_checked = [c["name"] for c in result.invariants]
    result.invariants_held = all(c["held"] for c in result.invariants)
    result.details = {
        "environment": env.describe(),
        **details,
        "journeys": len(clients),
        "journeys_finished_before_fault": finished_before,
        "deals": produced,
        "drained": drained,
    }
    result.durations = {
        "fault_and_recovery_s": round(fault_s, 2),
        "drain_s": round(drain_s, 2),
        "checks_s": round(time.monotonic() - checks_at, 2),
        "total_s": round(time.monotonic() - started, 2),
    }
    return result


def run(names: list[str], size: int, rate: float | None) -> list[DrillResult]:
    """Prepare the environment, start the stack, run each drill; always clean up."""
    workdir = Path(tempfile.mkdtemp(prefix="bd-drill-"))
    began = time.monotonic()
    env = prepare_environment(workdir)
    print(f"drill: servers ready in {time.monotonic() - began:.1f} s", file=sys.stderr)
    results: list[DrillResult] = []
    stack: Any = None
    try:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brokerdesk.settings")
        import django

        django.setup()
        from django.core.management import call_command

        from brokerdesk.core.drills.stack import DrillStack

        setup_at = time.monotonic()
        call_command("migrate", verbosity=0)
        print(f"drill: migrated in {time.monotonic() - setup_at:.1f} s", file=sys.stderr)
        todo = []
        for name in names:
            reason = env.not_applicable(name)
            if reason:
                results.append(DrillResult(name, FAULTS[name], applicable=False, reason=reason))
            else:
                todo.append(name)
        todo.sort(key=DRILLS.index)  # slow_consumer last: it leaves the slowed worker running
        if todo:
            speed = rate or float(10 * size)
            stack = DrillStack(workdir, size=size, rate=speed, faults=PLATFORM_FAULTS)
            stack.start()
            print(f"drill: system up in {time.monotonic() - setup_at:.1f} s", file=sys.stderr)
            for name in todo:
                results.append(run_drill(name, stack, env, size))
    finally:
        closing_at = time.monotonic()
        if stack is not None:
            stack.close()
        env.close()
        print(f"drill: stopped in {time.monotonic() - closing_at:.1f} s", file=sys.stderr)
        if all(r.invariants_held is not False for r in results):
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"drill: logs kept in {workdir}", file=sys.stderr)
    order = {name: i for i, name in enumerate(names)}
    return sorted(results, key=lambda r: order[r.drill])


# --- output --------------------------------------------------------------------------------------


def table(results: list[DrillResult]) -> str:
    """The results as a plain-text table, then each failed invariant's detail."""
    header = ("drill", "result", "invariants", "fault+recovery", "drain", "total")
    rows = [header]
    for r in results:
        if not r.applicable:
            rows.append((r.drill, "n/a", r.reason, "", "", ""))
            continue
        held = sum(1 for c in r.invariants if c["held"])
        rows.append(
            (
                r.drill,
                "held" if r.invariants_held else "BROKEN",
                f"{held}/{len(r.invariants)}",
                f"{r.durations['fault_and_recovery_s']:.1f} s",
                f"{r.durations['drain_s']:.1f} s",
                f"{r.durations['total_s']:.1f} s",
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in results:
        if r.applicable:
            d = r.details
            lines.append(
                f"{r.drill}: {d['deals']} deals, {d['journeys']} journeys "
                f"({d['journeys_finished_before_fault']} finished before the fault); "
                f"{d['environment']}"
            )
        for c in r.invariants:
            mark = "ok " if c["held"] else "BROKEN"
            lines.append(f"{r.drill}: {mark} {c['name']}: {c['detail']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the drills; print a table (or JSON); exit 1 when an invariant broke."""
    parser = argparse.ArgumentParser(prog="brokerdesk drill", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print a JSON list of drills")
    parser.add_argument(
        "--size", type=int, default=20, help="client journeys per drill (default 20)"
    )
    parser.add_argument(
        "--rate", type=float, default=None, help="simulated deals per second (default 10 x size)"
    )
    parser.add_argument("--only", action="append", choices=DRILLS, help="run only this drill")
    args = parser.parse_args(argv)
    if args.size < 1:
        parser.error("--size must be at least 1")
    names = list(args.only or DRILLS)
    started = time.monotonic()
    results = run(names, args.size, args.rate)
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=1))
    else:
        print(table(results))
        print(f"total {time.monotonic() - started:.1f} s")
    return 1 if any(r.invariants_held is False for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
