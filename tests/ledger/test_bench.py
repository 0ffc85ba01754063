"""The ledger benchmark runs end to end on the configured engine and prints its figures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from django.db import connection

from brokerdesk.core.benchdb import bench_environment

REQUIRED = {
    "database",
    "transfers_per_s",
    "p50_ms",
    "p99_ms",
    "batched_entries_per_s",
    "replay_differences",
}


@pytest.mark.django_db
def test_bench_ledger_prints_its_figures_with_a_clean_replay():
    env = bench_environment()
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "brokerdesk.ledger.bench",
            "--json",
            "--seconds",
            "2",
            "--processes",
            "1",
            "--threads",
            "4",
            "--accounts",
            "200",
            "--batch-size",
            "200",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    assert figures.keys() >= REQUIRED
    assert figures["database"] == connection.vendor
    assert figures["replay_differences"] == 0
    assert figures["transfers_per_s"] > 0 and figures["batched_entries_per_s"] > 0
    assert 0 < figures["p50_ms"] <= figures["p99_ms"]
