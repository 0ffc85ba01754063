"""The operations view: stream depth and consumer lag, projection freshness, idempotency
rejections and the slowest queries — on the back-office "Operations" page and on /metrics.

* Stream depth per (stream, consumer group) comes from the bus (``observe_depth``, which also
  sets core's ``brokerdesk_stream_depth`` gauges); consumer lag is core's
  ``brokerdesk_consumer_lag_seconds`` (set by the workers, so Prometheus has it per worker).
* Projection freshness: for each reporting projection, the seconds its newest applied event
  is behind now while its stream still has a backlog (0 when it has caught up), and the age of
  its last apply; exported at scrape time by :class:`ReportingCollector`.
* Idempotency rejections: core's ``brokerdesk_idempotent_replays_total`` (ledger replays,
  payment webhooks…) and ``brokerdesk_consumer_duplicates_total``, as this process counts them.
* Slow queries: a database execute wrapper (installed on each new connection) times every
  statement with one ``perf_counter`` pair; statements over ``REPORTING_SLOW_QUERY_MS``
  (default 200) are counted and the slowest shapes kept in a small table in memory. On
  PostgreSQL with ``pg_stat_statements`` installed, its top statements are shown as well.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from django.conf import settings
from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from brokerdesk.core import clock

log = structlog.get_logger(__name__)

SLOW_QUERIES = Counter(
    "brokerdesk_slow_queries_total",
    "Database statements slower than REPORTING_SLOW_QUERY_MS, by database vendor.",
    ["vendor"],
)

PROJECTIONS = ("payments", "trading", "partners", "compliance")
_KEEP_SHAPES = 50
_NUMBERS = re.compile(r"\b\d+\b|'[^']*'")


def slow_threshold_ms() -> float:
    """Statements at least this slow are recorded."""
    return float(getattr(settings, "REPORTING_SLOW_QUERY_MS", 200))


@dataclass
class QueryShape:
    """A statement shape (literals and numbers blanked) and how slow it has been."""

    sql: str
    count: int = 0
    total_ms: float = 0.0
    max_ms: float = 0.0

    @property
    def mean_ms(self) -> float:
        """Average duration of the recorded executions."""
        return self.total_ms / self.count if self.count else 0.0


class SlowQueryLog:
    """The slowest statement shapes this process has run (bounded, thread-safe)."""

    def __init__(self) -> None:
        self._shapes: dict[str, QueryShape] = {}
        self._lock = threading.Lock()

    def record(self, sql: str, elapsed_ms: float, vendor: str) -> None:
        """Count one slow execution of ``sql``."""
        SLOW_QUERIES.labels(vendor=vendor).inc()
        shape = _NUMBERS.sub("?", " ".join(sql.split()))[:500]
        with self._lock:
            entry = self._shapes.get(shape)
            if entry is None:
                if len(self._shapes) >= _KEEP_SHAPES:
                    fastest = min(self._shapes.values(), key=lambda s: s.max_ms)
                    if fastest.max_ms >= elapsed_ms:
                        return
                    del self._shapes[fastest.sql]
                entry = self._shapes[shape] = QueryShape(shape)
            entry.count += 1
            entry.total_ms += elapsed_ms
            entry.max_ms = max(entry.max_ms, elapsed_ms)

    def slowest(self, limit: int = 10) -> list[QueryShape]:
        """The shapes with the highest maximum duration."""
        with self._lock:
            return sorted(self._shapes.values(), key=lambda s: -s.max_ms)[:limit]

    def clear(self) -> None:
        """Forget everything (tests)."""
        with self._lock:
            self._shapes.clear()


SLOW_LOG = SlowQueryLog()


def timing_wrapper(vendor: str) -> Callable[..., Any]:
    """A Django execute wrapper that records statements slower than the threshold."""

    def wrapper(
        execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            if elapsed_ms >= slow_threshold_ms():
                SLOW_LOG.record(sql, elapsed_ms, vendor)

    return wrapper


def install_on_connection(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: time this connection's statements."""
    if not any(getattr(w, "_reporting_timer", False) for w in connection.execute_wrappers):
        wrapper = timing_wrapper(connection.vendor)
        wrapper._reporting_timer = True  # type: ignore[attr-defined]
        connection.execute_wrappers.append(wrapper)


# ---------------------------------------------------------------------------- snapshot


@dataclass(frozen=True)
class StreamRow:
    """Backlog of one consumer group on one stream, and its lag where known."""

    stream: str
    group: str
    length: int
    undelivered: int
    pending: int
    lag_s: float | None


@dataclass(frozen=True)
class ProjectionRow:
    """How fresh one reporting projection is."""

    name: str
    events: int
    last_event_at: datetime | None
    last_applied_at: datetime | None
    behind_s: float | None  # None: never applied anything
    idle_s: float | None


@dataclass(frozen=True)
class CounterRow:
    """One labelled counter value."""

    name: str
    label: str
    value: float


@dataclass(frozen=True)
class Snapshot:
    """Everything the Operations page shows."""

    streams: list[StreamRow]
    stream_error: str
    projections: list[ProjectionRow]
    rejections: list[CounterRow]
    slow_queries: list[QueryShape]
    pg_statements: list[QueryShape]
    slow_threshold_ms: float

    @property
    def busy_streams(self) -> list[StreamRow]:
        """The streams where a consumer group has messages waiting or unacknowledged."""
        return [r for r in self.streams if r.undelivered or r.pending]


def _gauge_values(name: str) -> dict[tuple[str, ...], float]:
    """Current samples of a metric of this process, by label values."""
    out: dict[tuple[str, ...], float] = {}
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sample.labels.values())] = sample.value
    return out


def stream_rows() -> tuple[list[StreamRow], str]:
    """Depth of every registered consumer on each of its streams (and the error, if any)."""
    from brokerdesk.core.bus.factory import get_bus
    from brokerdesk.core.consumers import autodiscover, observe_depth

    lags = _gauge_values("brokerdesk_consumer_lag_seconds")
    try:
        bus = get_bus()
        try:
            depths = observe_depth(bus, autodiscover().values())
        finally:
            bus.close()
    except Exception as exc:  # the page still shows the rest when the bus is down
        log.warning("operations_bus_unavailable", error=str(exc))
        return [], str(exc)
    rows = [
        StreamRow(d.stream, d.group, d.length, d.undelivered, d.pending, lags.get((d.group,)))
        for d in depths
    ]
    return sorted(rows, key=lambda r: (r.stream, r.group)), ""


def projection_rows(backlog: dict[str, int] | None = None) -> list[ProjectionRow]:
    """Freshness of each projection; ``backlog`` maps a projection to its stream backlog."""
    from brokerdesk.reporting.models import ProjectionState

    now = clock.now()
    states = {s.name: s for s in ProjectionState.objects.all()}
    rows = []
    for name in PROJECTIONS:
        state = states.get(name)
        if state is None or state.last_event_at is None:
            rows.append(ProjectionRow(name, 0, None, None, None, None))
            continue
        waiting = (backlog or {}).get(name, 0)
        behind = max((now - state.last_event_at).total_seconds(), 0.0) if waiting else 0.0
        idle = (
            max((now - state.last_applied_at).total_seconds(), 0.0)
            if state.last_applied_at
            else None
        )
        rows.append(
            ProjectionRow(
                name, state.events, state.last_event_at, state.last_applied_at, behind, idle
            )
        )
    return rows


def rejection_rows() -> list[CounterRow]:
    """Idempotency rejections and dropped duplicates counted by this process."""
    rows = []
    for metric, label in (
        ("brokerdesk_idempotent_replays_total", "kind"),
        ("brokerdesk_consumer_duplicates_total", "consumer"),
    ):
        for labels, value in sorted(_gauge_values(metric).items()):
            rows.append(CounterRow(metric, f"{label}={labels[0] if labels else ''}", value))
    return rows


def pg_top_statements(limit: int = 10) -> list[QueryShape]:
    """The slowest statements by mean time from ``pg_stat_statements`` (empty if absent)."""
    from django.db import connection, transaction

    if connection.vendor != "postgresql":
        return []
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'")
            if cursor.fetchone() is None:
                return []
            cursor.execute(
                "SELECT query, calls, total_exec_time, max_exec_time FROM pg_stat_statements "
                "ORDER BY mean_exec_time DESC LIMIT %s",
                [limit],
            )
            return [
                QueryShape(str(q)[:500], int(calls), float(total), float(top))
                for q, calls, total, top in cursor.fetchall()
            ]
    except Exception as exc:  # not allowed to read it: show nothing rather than fail
        log.info("pg_stat_statements_unavailable", error=str(exc))
        return []


def snapshot() -> Snapshot:
    """Everything the Operations page shows, read now."""
    streams, error = stream_rows()
    backlog: dict[str, int] = {}
    for row in streams:
        if row.group.startswith("reporting."):
            name = row.group.removeprefix("reporting.")
            backlog[name] = backlog.get(name, 0) + row.undelivered + row.pending
    return Snapshot(
        streams=streams,
        stream_error=error,
        projections=projection_rows(backlog),
        rejections=rejection_rows(),
        slow_queries=SLOW_LOG.slowest(),
        pg_statements=pg_top_statements(),
        slow_threshold_ms=slow_threshold_ms(),
    )


# ---------------------------------------------------------------------------- /metrics


class ReportingCollector(Collector):
    """Projection freshness, read from the database when Prometheus scrapes /metrics."""

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The metric names, without reading the database (called when registering)."""
        yield from self._families()

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        events = GaugeMetricFamily(
            "brokerdesk_projection_events",
            "Facts a reporting projection has applied.",
            labels=["projection"],
        )
        idle = GaugeMetricFamily(
            "brokerdesk_projection_idle_seconds",
            "Seconds since a reporting projection last applied a batch.",
            labels=["projection"],
        )
        age = GaugeMetricFamily(
            "brokerdesk_projection_event_age_seconds",
            "Seconds between now and the newest event a reporting projection applied.",
            labels=["projection"],
        )
        return events, idle, age

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield the freshness gauges (nothing when the database cannot be read)."""
        events, idle, age = self._families()
        try:
            rows = projection_rows()
        except Exception:  # no database (yet): export no freshness rather than fail the scrape
            return
        now = clock.now()
        for row in rows:
            events.add_metric([row.name], row.events)
            if row.idle_s is not None:
                idle.add_metric([row.name], row.idle_s)
            if row.last_event_at is not None:
                age.add_metric([row.name], max((now - row.last_event_at).total_seconds(), 0.0))
        yield events
        yield idle
        yield age


_collector_lock = threading.Lock()
_collector: ReportingCollector | None = None


def register_collector() -> None:
    """Add the freshness collector to the default registry once per process."""
    global _collector
    with _collector_lock:
        if _collector is None:
            _collector = ReportingCollector()
            REGISTRY.register(_collector)
