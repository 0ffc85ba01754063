"""The relay, worker and bus-depth commands, the worker's graceful stop, and core metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction
from prometheus_client import REGISTRY

from brokerdesk.core import metrics
from brokerdesk.core.bus.factory import get_bus
from brokerdesk.core.bus.outbox import OutboxBus
from brokerdesk.core.bus.redis_streams import RedisStreamsBus
from brokerdesk.core.consumers import register, unregister
from brokerdesk.core.errors import ValidationError
from brokerdesk.core.events import emit
from brokerdesk.core.models import BusMessage, OutboxEvent, ProcessedEvent
from brokerdesk.core.worker import run_worker

from .conftest import happened, message, unique

pytestmark = pytest.mark.django_db(transaction=True)


def test_get_bus_chooses_the_adapter_by_scheme():
    outbox = get_bus("outbox?claim_idle_ms=5")
    assert isinstance(outbox, OutboxBus) and outbox.claim_idle_ms == 5
    redis_bus = get_bus("redis://127.0.0.1:6379/3?maxlen=1000", prefix="p")
    try:
        assert isinstance(redis_bus, RedisStreamsBus)
        assert (redis_bus.maxlen, redis_bus.prefix) == (1000, "p")
        assert redis_bus.client.connection_pool.connection_kwargs["db"] == 3
    finally:
        redis_bus.close()
    with pytest.raises(ValidationError):
        get_bus("kafka://somewhere")
    with pytest.raises(ValidationError):
        get_bus("outbox?colour=1")


def test_relay_once_command_empties_the_outbox(capsys):
    stream = unique("cmd")
    with transaction.atomic():
        emit(happened(stream, 1), happened(stream, 2))
    before = REGISTRY.get_sample_value("brokerdesk_events_relayed_total", {"stream": stream})

    call_command("relay", "--once", "--bus", "outbox")

    assert "relayed 2 events" in capsys.readouterr().out
    assert not OutboxEvent.objects.filter(relayed_at__isnull=True).exists()
    assert BusMessage.objects.filter(stream=stream).count() == 2
    assert before is None
    assert REGISTRY.get_sample_value("brokerdesk_events_relayed_total", {"stream": stream}) == 2


def test_worker_once_drains_relay_and_consumers_then_bus_depth_reports(capsys):
    stream = unique("cmd")
    seen: list[int] = []
    spec = register(
        unique("cmdworker"), [stream], lambda ms: seen.extend(m.payload["n"] for m in ms)
    )
    try:
        with transaction.atomic():
            emit(happened(stream, 1), happened(stream, 2))
        call_command("worker", "--once", "--bus", "outbox", "--consumer", spec.name)
        out = json.loads(capsys.readouterr().out)
        call_command("bus_depth", "--bus", "outbox")
        depth = json.loads(capsys.readouterr().out)
    finally:
        unregister(spec.name)

    assert seen == [1, 2]
    assert out[spec.name]["processed"] == 2
    assert depth["outbox"]["unrelayed"] == 0
    mine = [c for c in depth["consumers"] if c["consumer"] == spec.name]
    assert mine == [
        {
            "consumer": spec.name,
            "stream": stream,
            "length": 2,
            "undelivered": 0,
            "pending": 0,
            "dead_letters": 0,
            "seconds_since_last_processed": mine[0]["seconds_since_last_processed"],
        }
    ]
    assert 0 <= mine[0]["seconds_since_last_processed"] < 60


def test_run_worker_handles_events_until_stopped():
    stream = unique("live")
    seen: list[int] = []
    spec = register(
        unique("live"),
        [stream],
        lambda ms: seen.extend(m.payload["n"] for m in ms),
        max_wait_ms=100,
    )
    stop = threading.Event()
    bus = OutboxBus(poll_interval_ms=20)
    thread = threading.Thread(
        target=run_worker, args=(bus, stop, [spec]), kwargs={"relay_interval_s": 0.05}
    )
    try:
        thread.start()
        with transaction.atomic():
            emit(happened(stream, 1))
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=10)
        unregister(spec.name)

    assert seen == [1]
    assert not thread.is_alive()
    assert ProcessedEvent.objects.filter(consumer=spec.name).count() == 1


def test_worker_process_stops_cleanly_on_sigterm(tmp_path: Path):
    db = settings.DATABASES["default"]
    env = {**os.environ, "BUS_URL": "outbox", "PYTHONUNBUFFERED": "1"}
    if connection.vendor == "sqlite":
        env["BROKERDESK_DATA_DIR"] = str(Path(db["NAME"]).parent)
        env["SQLITE_NAME"] = Path(db["NAME"]).name
        env.pop("DATABASE_URL", None)
    else:
        env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "brokerdesk.cli", "worker", "--no-relay"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline() if proc.stdout else ""
            lines.append(line)
            if "worker_started" in line or not line:
                break
        assert any("worker_started" in line for line in lines), lines
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "worker_stopped" in output
    record = json.loads(next(line for line in output.splitlines() if "worker_stopped" in line))
    assert record["level"] == "info"


def test_idempotent_replays_counter_is_labelled_by_kind():
    before = (
        REGISTRY.get_sample_value("brokerdesk_idempotent_replays_total", {"kind": "test_kind"}) or 0
    )
    metrics.IDEMPOTENT_REPLAYS.labels(kind="test_kind").inc()
    after = REGISTRY.get_sample_value("brokerdesk_idempotent_replays_total", {"kind": "test_kind"})
    assert after == before + 1


def test_metrics_endpoint_exposes_the_pipeline_metrics(client):
    consumer = unique("endpoint")
    metrics.DEAD_LETTERS.labels(consumer=consumer).inc()

    body = client.get("/metrics").content.decode()

    assert f'brokerdesk_dead_letters_total{{consumer="{consumer}"}} 1.0' in body


def test_trim_keeps_what_a_group_has_not_acknowledged():
    stream = unique("trim")
    bus = OutboxBus()
    bus.publish([message(stream, n) for n in range(4)])
    got = bus.read(stream, "g", "c", count=3, block_ms=0)
    bus.ack(stream, "g", got[:2])  # 0, 1 acknowledged; 2 pending; 3 never read

    assert bus.trim(datetime.now(UTC) - timedelta(days=1)) == 0  # too young
    assert bus.trim(datetime.now(UTC) + timedelta(seconds=1)) == 2

    left = BusMessage.objects.filter(stream=stream).order_by("position")
    assert [m.payload["n"] for m in left] == [2, 3]


def test_prune_bus_command_forgets_old_processed_ids(capsys):
    old = ProcessedEvent.objects.create(
        consumer="c", event_id="old", processed_at=datetime.now(UTC) - timedelta(days=40)
    )
    ProcessedEvent.objects.create(consumer="c", event_id="new", processed_at=datetime.now(UTC))

    call_command("prune_bus")

    assert json.loads(capsys.readouterr().out)["processed_events"] == 1
    assert list(ProcessedEvent.objects.values_list("event_id", flat=True)) == ["new"]
    assert not ProcessedEvent.objects.filter(pk=old.pk).exists()
