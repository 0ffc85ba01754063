"""The scale benchmark runs end to end at a tiny size and prints its figures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from django.db import connection

from brokerdesk.core.benchdb import bench_environment

REQUIRED = {
    "accounts",
    "deals",
    "summary_p50_ms",
    "summary_p99_ms",
    "summary_req_per_s",
    "ib_report_ms",
    "spike_max_lag_s",
}


def run_bench(*args: str) -> dict[str, object]:
    completed = subprocess.run(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", "brokerdesk.reporting.bench", "--json", *args],
        env=bench_environment(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.django_db
def test_bench_scale_prints_its_figures_at_a_tiny_size():
    # The news spike starts five processes (simulator, bridge, ingest, projector, relay): it
    # runs on PostgreSQL only, to keep the SQLite suite quick.
    spike = "0.5" if connection.vendor == "postgresql" else "0"
    figures = run_bench(
        "--accounts", "120", "--deals", "2000", "--days", "5", "--clients", "2",
        "--seconds", "1", "--samples", "3", "--spike-seconds", spike, "--base-rate", "50",
        "--web-workers", "1",
    )  # fmt: skip

    assert figures.keys() >= REQUIRED
    assert (figures["accounts"], figures["deals"]) == (120, 2000)
    assert figures["summary_errors"] == 0 and figures["summary_requests"] > 0
    assert 0 < figures["summary_p50_ms"] <= figures["summary_p99_ms"]
    assert figures["ib_report_rows"] > 0 and figures["ib_report_ms"] > 0
    if spike != "0":
        assert figures["spike_drained"] is True
        assert figures["spike_stored"] == figures["spike_deals"] > 0
        assert figures["projection_catchup_s"] is not None
