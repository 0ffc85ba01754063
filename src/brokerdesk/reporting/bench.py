"""Scale benchmark: ``brokerdesk bench scale [--json] [--accounts N] [--deals M] …``.

Runs in a fresh ``*_bench`` database (``brokerdesk bench`` sets it up). Steps:

1. **Data**, written straight into the real tables in bulk (``COPY`` on PostgreSQL through
   ``core.bulk``; ``executemany`` on SQLite): an IB tree (partners' closure table), ``--accounts``
   clients each with one funded trading account, attributions of about 70 % of them to IBs,
   ``--deals`` closing deals spread over ``--days`` days, the account-summary read model and
   the reporting rollups (account-day and IB-day rows, deposits included) derived from them.
2. **Account-summary reads over real HTTP**: gunicorn (``brokerdesk serve``'s command line)
   in a subprocess against the bench database; ``--clients`` threads, each signed in as its
   own client (a session cookie), call ``GET /api/v1/trading/accounts/{login}/summary`` for
   ``--seconds`` on kept-alive connections → ``summary_p50_ms``, ``summary_p99_ms``,
   ``summary_req_per_s`` (the load generator shares the machine's cores with the server).
3. **IB report latency** over HTTP as a staff user with the finance role:
   ``ib_report_ms`` (p50) is ``GET /api/v1/reporting/reports/ib-daily`` for one top-level
   IB's network over the whole period; ``ib_report_all_ms`` every IB for the last 7 days;
   ``ib_report_query_ms`` the rollup query alone for every IB over the whole period.
4. **News spike** (``--spike-seconds`` > 0): trading's real ingest pipeline
   (``trading.bench.Pipeline``: simulator → bridge → bus → ``trading.ingest`` worker → relay)
   plus a ``reporting.trading`` projector worker; the simulator runs at ``--base-rate`` deals/s,
   then at ten times that for ``--spike-seconds``, then back. ``spike_max_lag_s`` is the
   largest time between a deal on the platform and its storage; ``projection_max_behind_s``
   the largest lag of the reporting projection sampled during the run, and
   ``projection_catchup_s`` how long after production stopped the rollups held every deal.

Full size: ``--accounts 120000 --deals 40000000`` on PostgreSQL (minutes of COPY; the
default is small so CI finishes in well under a minute).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID

SERVER = "bench-live"
LOGIN_BASE = 1_000_000


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brokerdesk.settings")
    import django

    django.setup()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def _chunks(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# ---------------------------------------------------------------------------- data


def generate(args: argparse.Namespace) -> dict[str, Any]:
    """Write the IB tree, clients, accounts, deals, summaries and rollups; return the plan."""
    from django.db import connection, transaction

    from brokerdesk.clients.models import Client
    from brokerdesk.core import bulk
    from brokerdesk.core.ids import new_id
    from brokerdesk.partners.bench import build_tree, insert_tree
    from brokerdesk.partners.models import Attribution
    from brokerdesk.trading.models import TradingAccount

    rng = random.Random(args.seed)
    now = datetime.now(UTC)
    ibs = max(3, args.accounts // 120)
    nodes, closure = build_tree(ibs, min(3, ibs), rng)
    insert_tree(nodes, closure)
    top_ibs = [n for n, _, depth in nodes if depth == 0]
    ib_ids = [n for n, _, _ in nodes]
    clients = [new_id() for _ in range(args.accounts)]
    ib_of = {c: (rng.choice(ib_ids) if rng.random() < 0.7 else None) for c in clients}
    with transaction.atomic():
        for chunk in _chunks(range(args.accounts), 20_000):
            bulk.insert(
                Client,
                [
                    SimpleNamespace(
                        id=clients[i],
                        kind="individual",
                        email=f"bench{i}@example.com",
                        country="CY",
                        jurisdiction="cysec",
                        first_name="Bench",
                        last_name=f"Trader {i}",
                        registered_at=now,
                        updated_at=now,
                    )
                    for i in chunk
                ],
            )
            bulk.insert(
                TradingAccount,
                [
                    SimpleNamespace(
                        id=new_id(),
                        server=SERVER,
                        login=LOGIN_BASE + i,
                        client_id=str(clients[i]),
                        currency="USD",
                        currency_digits=2,
                        group="real\\std",
                        leverage=100,
                        is_live=True,
                        created_at=now,
                        updated_at=now,
                    )
                    for i in chunk
                ],
            )
            bulk.insert(
                Attribution,
                [
                    SimpleNamespace(
                        client_id=clients[i],
                        ib_id=ib_of[clients[i]],
                        source="manual",
                        link_id=None,
                        touched_at=now,
                        attributed_at=now,
                        client_label=f"Bench T{i}",
                        country="CY",
                        updated_at=now,
                    )
                    for i in chunk
                    if ib_of[clients[i]] is not None
                ],
            )
    start_day = now.date() - timedelta(days=args.days - 1)
    insert_deals(args, rng, start_day)
    build_read_models(clients, ib_of, start_day, args.days, rng)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return {
        "clients": clients,
        "top_ibs": top_ibs,
        "ibs": len(nodes),
        "start": start_day,
        "end": now.date(),
    }


def insert_deals(args: argparse.Namespace, rng: random.Random, start_day: date) -> None:
    """``--deals`` closing deals on random accounts and times over the period."""
    from django.db import transaction

    from brokerdesk.core import bulk
    from brokerdesk.trading.models import TradingDeal

    first_ms = int(datetime.combine(start_day, datetime.min.time(), tzinfo=UTC).timestamp() * 1000)
    span_ms = args.days * 86_400_000 - 1
    for chunk in _chunks(range(args.deals), 50_000):
        rows = []
        for ticket in chunk:
            t = first_ms + rng.randrange(span_ms)
            volume = rng.choice((1000, 5000, 10_000, 20_000, 100_000))
            rows.append(
                SimpleNamespace(
                    server=SERVER,
                    deal=10 + ticket,
                    time=datetime.fromtimestamp(t / 1000, tz=UTC),
                    time_msc=t,
                    login=LOGIN_BASE + rng.randrange(args.accounts),
                    action=ticket % 2,
                    entry=1,
                    position_id=ticket,
                    symbol="EURUSD",
                    volume=volume,
                    volume_closed=volume,
                    currency_digits=2,
                    profit=rng.randint(-20_000, 20_000),
                    commission=-(volume // 1000) * 7,
                    ingested_msc=t,
                )
            )
        with transaction.atomic():
            bulk.insert(TradingDeal, rows)


def build_read_models(
    clients: list[UUID],
    ib_of: dict[UUID, UUID | None],
    start_day: date,
    days: int,
    rng: random.Random,
) -> None:
    """The account summaries and rollups, derived from the deals with set-based SQL."""
    from django.db import connection, transaction

    from brokerdesk.core import bulk
    from brokerdesk.reporting.models import AccountDay

    day_sql = (
        "(d.time AT TIME ZONE 'UTC')::date" if connection.vendor == "postgresql" else "date(d.time)"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO trading_account_summary (server, login, currency_digits, balance, credit, "
            "open_pl, equity, margin, margin_free, margin_level, deals, last_deal_ticket, "
            "last_deal_time_msc, state_time_msc, updated_msc) "
            "SELECT server, login, 2, SUM(profit + commission), 0, 0, SUM(profit + commission), "
            "0, SUM(profit + commission), 0, COUNT(*), MAX(deal), MAX(time_msc), 0, MAX(time_msc) "
            "FROM trading_deal WHERE server = %s GROUP BY server, login",
            [SERVER],
        )
        # Per account and day; the client and IB columns are filled from a mapping table.
        cursor.execute(
            "CREATE TEMPORARY TABLE bench_owner (login bigint PRIMARY KEY, client_id varchar(100), "
            "ib_id varchar(40))"
        )
    rows = [
        (LOGIN_BASE + i, str(c), str(ib_of[c]) if ib_of[c] else "") for i, c in enumerate(clients)
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        for chunk in _chunks(rows, 20_000):
            cursor.executemany(
                "INSERT INTO bench_owner (login, client_id, ib_id) VALUES (%s, %s, %s)", chunk
            )
        cursor.execute(
            "INSERT INTO reporting_account_day (day, currency, ib_id, client_id, server, login, "  # noqa: S608
            "deposits, deposit_count, withdrawals, withdrawal_count, volume, deals, profit, "
            "charges, ib_commission) "
            f"SELECT {day_sql}, 'USD', o.ib_id, o.client_id, d.server, d.login, 0, 0, 0, 0, "
            "SUM(d.volume_closed), COUNT(*), SUM(d.profit), SUM(d.commission + d.storage + d.fee), "
            "0 FROM trading_deal d JOIN bench_owner o ON o.login = d.login WHERE d.server = %s "
            f"GROUP BY {day_sql}, o.ib_id, o.client_id, d.server, d.login",
            [SERVER],
        )
        bulk.insert(
            AccountDay,
            [
                SimpleNamespace(
                    day=start_day + timedelta(days=rng.randrange(days)),
                    currency="USD",
                    ib_id=str(ib_of[c]) if ib_of[c] else "",
                    client_id=str(c),
                    server="",
                    login=0,
                    deposits=rng.choice((10_000, 50_000, 100_000, 500_000)),
                    deposit_count=1,
                )
                for c in clients
            ],
        )
        cursor.execute(
            "INSERT INTO reporting_ib_day (day, currency, ib_id, deposits, deposit_count, "
            "withdrawals, withdrawal_count, volume, deals, profit, charges, ib_commission) "
            "SELECT day, currency, ib_id, SUM(deposits), SUM(deposit_count), SUM(withdrawals), "
            "SUM(withdrawal_count), SUM(volume), SUM(deals), SUM(profit), SUM(charges), "
            "SUM(ib_commission) FROM reporting_account_day GROUP BY day, currency, ib_id"
        )
        cursor.execute("DROP TABLE bench_owner")


# ---------------------------------------------------------------------------- HTTP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def database_env() -> dict[str, str]:
    """Environment that points the web server at this process's database."""
    from brokerdesk.trading.bench import database_env as trading_database_env

    return trading_database_env()


@contextlib.contextmanager
def web_server(workers: int, threads: int, workdir: Path) -> Iterator[int]:
    """gunicorn serving the site on a free port (no access log); yields the port."""
    from brokerdesk.core.management.commands.serve import gunicorn_argv

    port = _free_port()
    argv = gunicorn_argv(f"127.0.0.1:{port}", workers, threads)
    argv = [a for a in argv if a not in {"--access-logfile", "-"}] + ["--keep-alive", "30"]
    log = (workdir / "gunicorn.log").open("ab")
    proc = subprocess.Popen(  # noqa: S603
        argv, env={**os.environ, **database_env()}, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"the web server did not start; see {workdir / 'gunicorn.log'}")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def session_cookie(user: Any) -> str:
    """A signed-in session for ``user`` (the cookie header value)."""
    from django.conf import settings
    from django.test import Client

    http = Client()
    http.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={http.cookies[settings.SESSION_COOKIE_NAME].value}"


def client_sessions(clients: list[UUID], count: int) -> list[tuple[str, int]]:
    """``count`` clients get a user and a session: (cookie, their account's login)."""
    from django.contrib.auth import get_user_model

    from brokerdesk.clients.models import Client

    out = []
    for i in range(min(count, len(clients))):
        user = get_user_model().objects.create_user(username=f"bench-client-{i}", password=None)
        Client.objects.filter(pk=clients[i]).update(user=user)
        out.append((session_cookie(user), LOGIN_BASE + i))
    return out


def staff_cookie() -> str:
    """A session of a staff user with the finance role."""
    from django.contrib.auth import get_user_model

    from brokerdesk.staff.roles import grant_role

    user = get_user_model().objects.create_user(username="bench-finance", password=None)
    grant_role(user, "finance")
    return session_cookie(user)


def _get(conn: http.client.HTTPConnection, path: str, cookie: str) -> tuple[int, bytes]:
    """GET on a kept-alive connection (reopened once if the server closed it while idle)."""
    for attempt in (1, 2):
        try:
            conn.request("GET", path, headers={"Cookie": cookie})
            response = conn.getresponse()
            return response.status, response.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            conn.close()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def summary_load(port: int, sessions: list[tuple[str, int]], seconds: float) -> dict[str, Any]:
    """Each session reads its own account's summary in a loop; latency and throughput."""
    latencies: list[list[float]] = [[] for _ in sessions]
    errors = [0]
    start = threading.Barrier(len(sessions) + 1)
    stop_at = [0.0]

    def run(index: int, cookie: str, login: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        path = f"/api/v1/trading/accounts/{login}/summary"
        status, body = _get(conn, path, cookie)  # warm-up, and the answer is checked once
        if status != 200 or json.loads(body)["login"] != login:
            errors[0] += 1
        start.wait()
        mine = latencies[index]
        while time.perf_counter() < stop_at[0]:
            began = time.perf_counter()
            status, _ = _get(conn, path, cookie)
            mine.append((time.perf_counter() - began) * 1000)
            if status != 200:
                errors[0] += 1
        conn.close()

    threads = [
        threading.Thread(target=run, args=(i, cookie, login))
        for i, (cookie, login) in enumerate(sessions)
    ]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + 3600
    start.wait()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    flat = [v for per in latencies for v in per]
    return {
        "summary_p50_ms": round(_percentile(flat, 0.5), 2),
        "summary_p99_ms": round(_percentile(flat, 0.99), 2),
        "summary_req_per_s": round(len(flat) / elapsed),
        "summary_requests": len(flat),
        "summary_errors": errors[0],
    }


def ib_report_latency(port: int, plan: dict[str, Any], samples: int) -> dict[str, Any]:
    """The IB-by-day report over HTTP (one IB's network; every IB over 7 days) and the query."""
    from brokerdesk.reporting.models import IBDay

    cookie = staff_cookie()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    start, end = plan["start"], plan["end"]
    network = (
        f"/api/v1/reporting/reports/ib-daily?start={start}&end={end}&ib_id={plan['top_ibs'][0]}"
    )
    week = f"/api/v1/reporting/reports/ib-daily?start={end - timedelta(days=6)}&end={end}"
    figures: dict[str, Any] = {}
    for key, path in (("ib_report_ms", network), ("ib_report_all_ms", week)):
        status, body = _get(conn, path, cookie)  # warm-up (IB names cached)
        if status != 200:
            raise RuntimeError(f"{path}: HTTP {status}: {body[:300]!r}")
        timings = []
        for _ in range(samples):
            began = time.perf_counter()
            status, body = _get(conn, path, cookie)
            timings.append((time.perf_counter() - began) * 1000)
        figures[key] = round(statistics.median(timings), 2)
        figures[key.replace("_ms", "_rows")] = len(json.loads(body)["rows"])
    conn.close()
    timings = []
    for _ in range(samples):
        began = time.perf_counter()
        list(
            IBDay.objects.filter(day__gte=start, day__lte=end)
            .values("day", "ib_id", "currency", "deposits", "volume", "deals")
            .order_by("day", "ib_id")
        )
        timings.append((time.perf_counter() - began) * 1000)
    figures["ib_report_query_ms"] = round(statistics.median(timings), 2)
    return figures


# ---------------------------------------------------------------------------- spike


def news_spike(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Base rate, then ten times it, then base again, through the real ingest pipeline."""
    from brokerdesk.reporting.models import ProjectionState
    from brokerdesk.trading.bench import Pipeline, _drop_stream, stored_count

    pipe = Pipeline(workdir, rate=args.base_rate, traders=args.spike_traders, seed=args.seed)
    behind: list[float] = []
    try:
        pipe.start_simulator()
        pipe.start_worker(relay=False, name="ingest")
        pipe._spawn(
            "projector",
            ["worker", "--no-relay", "--consumer", "reporting.trading"],
            pipe.env(),
        )
        pipe.start_relay()
        pipe.start_bridge()

        def sample_for(seconds: float) -> None:
            """Sample the projection's lag for ``seconds``."""
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                time.sleep(0.5)
                state = ProjectionState.objects.filter(name="trading").first()
                if (
                    state is not None
                    and state.last_event_at is not None
                    and state.last_applied_at is not None
                    and state.last_applied_at.timestamp() * 1000 >= warm_from
                ):
                    behind.append((datetime.now(UTC) - state.last_event_at).total_seconds())

        warm_from = _wait_warm(pipe.server, timeout=120.0)
        sample_for(args.spike_seconds)
        pipe.control("set_rate", rate=args.base_rate * 10)
        sample_for(args.spike_seconds)
        pipe.control("set_rate", rate=args.base_rate)
        sample_for(args.spike_seconds)
        produced = pipe.stop_production()
        stopped = time.monotonic()
        drained = pipe.wait_stored(produced, timeout=max(60.0, args.spike_seconds * 10))
        closing = _closing_count(pipe.server)
        caught_up = _wait_projected(pipe.server, closing, timeout=60.0)
        catchup_s = time.monotonic() - stopped if caught_up else None
        max_lag, mean_lag = _lag_since(pipe.server, warm_from)
        stored = stored_count(pipe.server)
    finally:
        pipe.close()
        _drop_stream(pipe.server)
    return {
        "spike_max_lag_s": round(max_lag, 3),
        "spike_mean_lag_s": round(mean_lag, 3),
        "spike_deals": produced,
        "spike_stored": stored,
        "spike_drained": drained,
        "spike_base_rate": args.base_rate,
        "projection_max_behind_s": round(max(behind), 3) if behind else None,
        "projection_catchup_s": round(catchup_s, 2) if catchup_s is not None else None,
    }


def _wait_warm(server: str, timeout: float) -> int:
    """Wait until every process is up (deals are being stored); the time (ms) from then on.

    Deals made while the workers were still starting wait for them, which measures start-up,
    not ingest: the lag figures count only deals made after this point.
    """
    from brokerdesk.trading.bench import stored_count

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and stored_count(server) == 0:
        time.sleep(0.2)
    time.sleep(1.0)  # let the backlog of the start-up drain
    return int(time.time() * 1000)


def _lag_since(server: str, since_msc: int) -> tuple[float, float]:
    """(max, mean) seconds between platform time and storage of deals made after ``since``."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT max(ingested_msc - time_msc), avg(ingested_msc - time_msc) "
            "FROM trading_deal WHERE server = %s AND time_msc >= %s",
            [server, since_msc],
        )
        top, mean = cursor.fetchone()
    return (top or 0) / 1000, float(mean or 0) / 1000


def _closing_count(server: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM trading_deal WHERE server = %s AND entry IN (1, 2, 3) "
            "AND action IN (0, 1)",
            [server],
        )
        return int(cursor.fetchone()[0])


def _wait_projected(server: str, expected: int, timeout: float) -> bool:
    from django.db.models import Sum

    from brokerdesk.reporting.models import AccountDay

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        total = AccountDay.objects.filter(server=server).aggregate(n=Sum("deals"))["n"] or 0
        if total >= expected:
            return True
        time.sleep(0.25)
    return False


# ---------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One benchmark run; returns the figures."""
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    began = time.perf_counter()
    plan = generate(args)
    generate_s = time.perf_counter() - began
    sessions = client_sessions(plan["clients"], args.clients)
    with web_server(args.web_workers, args.web_threads, workdir) as port:
        figures = summary_load(port, sessions, args.seconds)
        figures.update(ib_report_latency(port, plan, args.samples))
    if args.spike_seconds > 0:
        figures.update(news_spike(args, workdir))
    else:
        figures["spike_max_lag_s"] = None  # not measured
    return {
        "accounts": args.accounts,
        "deals": args.deals,
        "ibs": plan["ibs"],
        "days": args.days,
        **figures,
        "generate_s": round(generate_s, 2),
        "clients": len(sessions),
        "web_workers": args.web_workers,
        "database": connection.vendor,
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(prog="brokerdesk bench scale")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--accounts", type=int, default=2000, help="funded trading accounts")
    parser.add_argument("--deals", type=int, default=50_000, help="closed deals to generate")
    parser.add_argument("--days", type=int, default=30, help="days the deals spread over")
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--seconds", type=float, default=5.0, help="summary load duration")
    parser.add_argument("--samples", type=int, default=20, help="IB report requests timed")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=4)
    parser.add_argument(
        "--spike-seconds", type=float, default=3.0, help="each spike phase (0: no spike)"
    )
    parser.add_argument("--base-rate", type=float, default=200.0, help="deals/s before the spike")
    parser.add_argument("--spike-traders", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.accounts < 1 or args.deals < 0 or args.days < 1 or args.clients < 1:
        parser.error("--accounts, --days and --clients must be at least 1; --deals not negative")
    _setup_django()
    figures = run(args)
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>24}: {value}")
    return 0 if figures["summary_errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
