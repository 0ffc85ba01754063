"""Ingest benchmark: ``brokerdesk bench trading [--json] [--seconds N] [--faults]``
(``bench ingest`` once core's bench command maps the name ``ingest`` to this module).

Real processes end to end, on the configured database (a fresh ``*_bench`` database) and bus
(``BUS_URL``: Redis Streams for ``redis://…``, else the outbox bus)::

    brokerdesk simulator mt5  →  brokerdesk bridge  →  bus stream platform.<server>
        →  brokerdesk worker (consumer trading.ingest)  →  trading_deal, summaries, outbox

Each consumer process runs ``brokerdesk worker --no-relay --consumer trading.ingest``
(``--workers N`` of them share one consumer group); ``brokerdesk relay`` moves the
``trading.deal_closed`` outbox rows to the bus in its own process. The simulator produces deals
at ``--rate`` for ``--seconds``; then it stops and the benchmark waits for the pipeline to
drain. The simulator starts idle; production (``--rate``) is switched on once every process
is up and the simulator's setup deals (its traders' first deposits) are stored. Figures:

* ``deals_per_s``: deals stored per second over the steady part of the run (from 2 s after
  production began to its end), from exact counts sampled every second in the database;
* ``min_5s_per_s``: the slowest stretch of 5 s within that steady part;
* ``produced_per_s``: what the simulator actually made per second (it makes less than
  ``--rate`` when its core is saturated);
* ``end_to_end_per_s``: deals made / (last stored - production start);
* ``max_lag_s`` / ``mean_lag_s``: over the deals made during production, the time a deal was
  stored (``ingested_msc``) minus the time the platform made it (``time_msc``);
* ``lost``, ``duplicated``, ``checksum_match``: the stored deals (setup deals included)
  against the simulator's own deal log (count, and SHA-256 over ticket, login, volume and
  profit in ticket order);
* ``consumer_stage_deals_per_s``: afterwards, the consumer alone on ``--consumer-stage``
  queued deal messages (no simulator or bridge competing for the CPU).

:class:`Pipeline` is also what the SIGKILL test drives.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from brokerdesk.trading.platform.port import to_minor


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brokerdesk.settings")
    import django

    django.setup()


def database_env() -> dict[str, str]:
    """Environment that points a child process at the database this process uses."""
    from django.db import connection

    settings = connection.settings_dict
    if connection.vendor == "postgresql":
        user = settings.get("USER") or "postgres"
        password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
        host = settings.get("HOST") or "127.0.0.1"
        port = settings.get("PORT") or 5432
        return {"DATABASE_URL": f"postgres://{user}{password}@{host}:{port}/{settings['NAME']}"}
    path = Path(str(settings["NAME"]))
    return {"BROKERDESK_DATA_DIR": str(path.parent), "SQLITE_NAME": path.name}


def log_digest(path: Path) -> tuple[int, str, set[int]]:
    """(count, checksum, tickets) of the simulator's deal log."""
    rows = []
    for line in path.read_text().splitlines():
        if line:
            d = json.loads(line)
            cd = int(d.get("DigitsCurrency", 2))
            rows.append(
                (int(d["Deal"]), int(d["Login"]), int(d["Volume"]), to_minor(d["Profit"], cd))
            )
    rows.sort()
    return len(rows), _checksum(rows), {r[0] for r in rows}


def stored_digest(server: str) -> tuple[int, int, str, set[int]]:
    """(rows, distinct tickets, checksum, tickets) of the stored deals of ``server``."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT deal, login, volume, profit FROM trading_deal WHERE server = %s ORDER BY deal",
            [server],
        )
        rows = [tuple(int(v) for v in row) for row in cursor.fetchall()]
    tickets = {r[0] for r in rows}
    return len(rows), len(tickets), _checksum(sorted(set(rows))), tickets


def _checksum(rows: Sequence[tuple[int, ...]]) -> str:
    h = hashlib.sha256()
    for row in rows:
        h.update((":".join(map(str, row)) + "\n").encode())
    return h.hexdigest()


def stored_count(server: str) -> int:
    """How many deals of ``server`` are stored."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM trading_deal WHERE server = %s", [server])
        return int(cursor.fetchone()[0])


class Pipeline:
    """Simulator, bridge and worker as real subprocesses, for the benchmark and the tests."""

    def __init__(
        self,
        workdir: Path,
        *,
        server: str | None = None,
        rate: float = 1000,
        traders: int = 50,
        faults: str = "",
        seed: int = 1,
        bus_url: str | None = None,
        claim_idle_ms: int = 2000,
    ) -> None:
        from django.conf import settings

        self.workdir = workdir
        self.server = server or f"bench{uuid.uuid4().hex[:8]}"
        self.rate = rate
        self.traders = traders
        self.faults = faults
        self.seed = seed
        url = bus_url or settings.BUS_URL
        sep = "&" if "?" in url else "?"
        self.bus_url = f"{url}{sep}claim_idle_ms={claim_idle_ms}"
        self.deal_log = workdir / f"{self.server}-deals.jsonl"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, IO[bytes]] = {}
        self.port = 0
        self._control: Any = None

    # --- processes ---------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """Environment for the bridge and the worker."""
        return {
            **os.environ,
            **database_env(),
            "BUS_URL": self.bus_url,
            "PLATFORM_SERVERS": f"{self.server}=simulator://127.0.0.1:{self.port}",
            "DJANGO_SETTINGS_MODULE": "brokerdesk.settings",
        }

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = self.logs.get(name) or (self.workdir / f"{self.server}-{name}.log").open("ab")
        self.logs[name] = log
        proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "brokerdesk.cli", *args],
            stdout=subprocess.PIPE if name == "simulator" else log,
            stderr=log,
            env=env,
        )
        self.processes[name] = proc
        return proc

    def start_simulator(self) -> None:
        """Start the simulator and learn its port."""
        args = [
            "simulator", "mt5", "--port", "0", "--rate", str(self.rate),
            "--traders", str(self.traders), "--seed", str(self.seed),
            "--deal-log", str(self.deal_log), "--name", self.server,
        ]  # fmt: skip
        if self.faults:
            args += ["--faults", self.faults]
        proc = self._spawn("simulator", args, {**os.environ})
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("listening"):
            raise RuntimeError(f"simulator did not start: {line!r}")
        self.port = int(line.split()[1].rsplit(":", 1)[1])

    def start_bridge(self) -> None:
        """``brokerdesk bridge --server NAME`` publishing to the bus."""
        self._spawn("bridge", ["bridge", "--server", self.server, "--backoff-max", "1"], self.env())

    def start_worker(self, *, relay: bool = True, name: str = "worker") -> None:
        """``brokerdesk worker --consumer trading.ingest`` (with the relay unless told)."""
        args = ["worker", "--consumer", "trading.ingest"] + ([] if relay else ["--no-relay"])
        self._spawn(name, args, self.env())

    def start_relay(self) -> None:
        """``brokerdesk relay``: the outbox (``trading.deal_closed``…) to the bus, 500 events
        per Redis stream entry (half the deals close: a firehose of its own)."""
        self._spawn("relay", ["relay", "--batch-size", "5000", "--pack", "500"], self.env())

    def kill(self, name: str) -> None:
        """SIGKILL one process and reap it."""
        proc = self.processes.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop(self, name: str, timeout: float = 15) -> None:
        """SIGTERM one process (SIGKILL if it hangs)."""
        proc = self.processes.pop(name, None)
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def close(self) -> None:
        """Stop everything started here."""
        if self._control is not None:
            with contextlib.suppress(Exception):
                self._control.disconnect()
            self._control = None
        for name in ["bridge", *sorted(n for n in self.processes if n != "simulator")]:
            self.stop(name)
        self.stop("simulator")
        for log in self.logs.values():
            log.close()
        self.logs.clear()

    # --- simulator control -------------------------------------------------------------------

    def control(self, method: str, **params: Any) -> Any:
        """A simulator control call."""
        if self._control is None:
            from brokerdesk.trading.platform.simulator_adapter import SimulatorAdapter

            self._control = SimulatorAdapter("control", port=self.port, timeout=30)
            self._control.connect()
        return self._control.control(method, **params)

    def stop_production(self) -> int:
        """No more deals (no clients, frozen prices, no faults); returns the deal count."""
        self.control("set_rate", rate=0, tick_seconds=0)
        self.control("faults", duplicate=0, reorder=0)
        return int(self.control("stats")["deals"])

    def wait_stored(self, expected: int, timeout: float) -> bool:
        """Wait until ``expected`` deals are stored."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if stored_count(self.server) >= expected:
                return True
            time.sleep(0.25)
        return stored_count(self.server) >= expected

    def compare(self) -> dict[str, Any]:
        """The stored deals against the simulator's deal log."""
        logged, log_sum, log_tickets = log_digest(self.deal_log)
        rows, distinct, db_sum, tickets = stored_digest(self.server)
        return {
            "deals": logged,
            "stored": rows,
            "lost": len(log_tickets - tickets),
            "duplicated": rows - distinct,
            "unexpected": len(tickets - log_tickets),
            "checksum_match": log_sum == db_sum and rows == logged,
        }

    def lag(self, since_msc: int = 0) -> tuple[float, float]:
        """(max, mean) seconds between a deal's platform time and its storage (deals made at
        or after ``since_msc``)."""
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT max(ingested_msc - time_msc), avg(ingested_msc - time_msc) "
                "FROM trading_deal WHERE server = %s AND time_msc >= %s",
                [self.server, since_msc],
            )
            top, mean = cursor.fetchone()
        return (top or 0) / 1000, float(mean or 0) / 1000


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One benchmark run; returns the figures."""
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    faults = "duplicate=0.05,reorder=0.05" if args.faults else ""
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    # The simulator starts idle (only its traders' initial deposits): production begins once
    # every process is up and those deposits went all the way through, so process start-up
    # is neither counted as throughput nor as lag.
    pipe = Pipeline(workdir, rate=0, traders=args.traders, faults=faults, seed=args.seed)
    samples: list[tuple[float, int]] = []
    try:
        pipe.start_simulator()
        for i in range(args.workers):
            pipe.start_worker(relay=False, name=f"worker{i}")
        pipe.start_relay()
        pipe.start_bridge()
        setup = int(pipe.control("stats")["deals"])
        if not pipe.wait_stored(setup, timeout=180):
            raise RuntimeError("the pipeline did not store the simulator's setup deals")
        cpu_before = _cpu_by_stage(pipe)
        start_msc = time.time_ns() // 1_000_000
        pipe.control("set_rate", rate=args.rate)
        t0 = time.monotonic()
        end = t0 + args.seconds
        while (now := time.monotonic()) < end:
            time.sleep(min(1.0, end - now))
            samples.append((time.monotonic(), stored_count(pipe.server)))
        produced = pipe.stop_production()
        t_gen = time.monotonic()
        drained = pipe.wait_stored(produced, timeout=max(120.0, args.seconds * 3))
        t_done = time.monotonic()
        cpu_after = _cpu_by_stage(pipe)
        figures = pipe.compare()
        max_lag, mean_lag = pipe.lag(since_msc=start_msc)
    finally:
        pipe.close()
        _drop_stream(pipe.server)
    steady = [(t, n) for t, n in samples if t >= t0 + 2.0]  # past the ramp-up
    if len(steady) >= 2:
        deals_per_s = (steady[-1][1] - steady[0][1]) / (steady[-1][0] - steady[0][0])
    else:
        deals_per_s = (figures["stored"] - setup) / max(t_done - t0, 1e-9)
    made = produced - setup
    return {
        "deals_per_s": round(deals_per_s),
        "min_5s_per_s": _slowest_window(steady, 5.0),
        "produced_per_s": round(made / max(t_gen - t0, 1e-9)),
        "end_to_end_per_s": round(made / max(t_done - t0, 1e-9)),
        "max_lag_s": round(max_lag, 3),
        "mean_lag_s": round(mean_lag, 3),
        "lost": figures["lost"],
        "duplicated": figures["duplicated"],
        "checksum_match": figures["checksum_match"],
        "drained": drained,
        "drain_s": round(t_done - t_gen, 2),
        "cpu_us_per_deal": {
            stage: round((cpu_after[stage] - cpu_before.get(stage, 0.0)) * 1e6 / max(made, 1), 1)
            for stage in cpu_after
        },
        "deals": figures["deals"],
        "setup_deals": setup,
        "stored": figures["stored"],
        "seconds": args.seconds,
        "rate": args.rate,
        "traders": args.traders,
        "workers": args.workers,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "faults": faults or None,
        "bus": settings.BUS_URL.split("://")[0],
        "database": "postgresql" if "DATABASE_URL" in os.environ else "sqlite",
        "cpus": os.cpu_count(),
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_by_stage(pipe: Pipeline) -> dict[str, float]:
    """CPU seconds used so far by each pipeline process, by the PostgreSQL backends serving
    this database (other than ours) and by the Redis server (shared with anything else that
    uses it), for ``cpu_us_per_deal``."""
    from django.db import connection

    cpu = {name.rstrip("0123456789"): 0.0 for name in pipe.processes}  # worker0, worker1… → worker
    for name, proc in pipe.processes.items():
        cpu[name.rstrip("0123456789")] += _cpu_seconds(proc.pid)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            cpu["postgres"] = sum(_cpu_seconds(int(pid)) for (pid,) in cursor.fetchall())
    with contextlib.suppress(Exception):
        from brokerdesk.core.bus.factory import get_bus

        bus = get_bus(pipe.bus_url)
        try:
            client = getattr(bus, "client", None)
            if client is not None:
                cpu["redis"] = _cpu_seconds(int(client.info("server")["process_id"]))
        finally:
            bus.close()
    return cpu


def _slowest_window(samples: list[tuple[float, int]], width: float) -> int | None:
    """The lowest storage rate over any stretch of at least ``width`` seconds of ``samples``
    (each sample paired with the latest one ``width`` seconds before it)."""
    rates = []
    for i, (t, n) in enumerate(samples):
        before = [(tj, nj) for tj, nj in samples[:i] if t - tj >= width]
        if before:
            tj, nj = before[-1]
            rates.append((n - nj) / (t - tj))
    return round(min(rates)) if rates else None


def consumer_stage(deals: int, logins: int = 500) -> dict[str, Any]:
    """The consumer alone: ``deals`` synthetic deal messages (half of them closing) already on
    the bus, handled in-process by ``trading.ingest``'s runner (same batches, same transaction
    and processed-id bookkeeping). Measures the stage, not the pipeline."""
    from brokerdesk.core.bus.factory import get_bus
    from brokerdesk.core.bus.redis_streams import RedisStreamsBus
    from brokerdesk.core.consumers import ConsumerRunner, register, unregister
    from brokerdesk.trading.bridge import Bridge, BridgeConfig, MemoryCheckpointStore
    from brokerdesk.trading.consumers import INGEST_BATCH_SIZE, INGEST_MAX_WAIT_MS, ingest
    from brokerdesk.trading.management.commands.bridge import BRIDGE_PACK
    from brokerdesk.trading.platform.port import (
        Deal,
        DealAction,
        DealEntry,
        EventKind,
        PlatformEvent,
    )

    server = f"stage{uuid.uuid4().hex[:8]}"

    class _Port:
        server_name = server

    bridge = Bridge(
        server,
        _Port(),  # type: ignore[arg-type]
        lambda m: None,
        MemoryCheckpointStore(),
        BridgeConfig(batch_rows=BRIDGE_PACK),  # columnar, as the bridge writes to Redis
    )
    now = int(time.time() * 1000)
    events = [
        PlatformEvent(
            EventKind.DEAL_ADD,
            Deal(
                deal=1000 + i,
                login=500_000 + i % logins,
                action=DealAction(i % 2),
                entry=DealEntry(i % 2),
                time_msc=now + i // 50,
                currency_digits=2,
                profit=(i % 7 - 3) * 100 if i % 2 else 0,
                commission=-35,
                symbol="EURUSD",
                volume=1000,
                volume_ext=10_000_000,
                volume_closed=1000 if i % 2 else 0,
                price=108_500,
                digits=5,
                contract_size=100_000,
                position_id=5000 + i // 2,
                order=900_000 + i,
            ),
            now,
        )
        for i in range(deals)
    ]
    bus = get_bus(pack=BRIDGE_PACK)  # entries as the bridge writes them
    messages = (
        bridge._batch_messages(events, "live")
        if isinstance(bus, RedisStreamsBus)
        else [bridge.to_message(e, "live") for e in events]
    )
    name = f"bench.stage.{server}"
    spec = register(
        name,
        [messages[0].stream],
        ingest,
        batch_size=INGEST_BATCH_SIZE,
        max_wait_ms=INGEST_MAX_WAIT_MS,
        keyed_writes=True,  # as trading.ingest
    )
    try:
        for i in range(0, len(messages), 5000):
            bus.publish(messages[i : i + 5000])
        runner = ConsumerRunner(bus, spec)
        started = time.perf_counter()
        while stored_count(server) < deals:  # a batch message carries many deals
            if not runner.run_once(block_ms=100).delivered:
                break
        elapsed = time.perf_counter() - started
    finally:
        unregister(name)
        bus.close()
        _drop_stream(server)
    return {"consumer_stage_deals_per_s": round(stored_count(server) / elapsed)}


def _drop_stream(server: str) -> None:
    """Remove the benchmark's Redis stream (the outbox bus lives in the bench database)."""
    from brokerdesk.core.bus.factory import get_bus
    from brokerdesk.trading.bridge import stream_name

    bus = get_bus()
    try:
        client = getattr(bus, "client", None)
        if client is not None:
            client.delete(bus.key(stream_name(server)))  # type: ignore[attr-defined]
    finally:
        bus.close()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(prog="brokerdesk bench ingest")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--seconds", type=float, default=60.0, help="production time")
    parser.add_argument(
        "--rate",
        type=float,
        default=21_000,
        help="simulated deals per second (default: 5%% above the 20,000/s the pipeline must keep)",
    )
    parser.add_argument("--traders", type=int, default=500, help="simulated client logins")
    parser.add_argument("--faults", action="store_true", help="5%% duplicates and 5%% reorders")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="consumer processes (one consumer group; production runs several)",
    )
    parser.add_argument(
        "--consumer-stage",
        type=int,
        default=20_000,
        help="then time the consumer alone on N queued deals (0: skip)",
    )
    args = parser.parse_args(argv)
    _setup_django()
    figures = run(args)
    if args.consumer_stage:
        figures.update(consumer_stage(args.consumer_stage))
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>18}: {value}")
    return 0 if figures["lost"] == 0 and figures["checksum_match"] else 1


if __name__ == "__main__":
    sys.exit(main())
