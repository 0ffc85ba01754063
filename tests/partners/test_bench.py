"""The commissions benchmark runs end to end on the configured engine and prints its figures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from django.db import connection

from brokerdesk.core.benchdb import bench_environment

REQUIRED = {"deals", "ibs", "levels", "seconds", "deals_per_s", "rerun_added_rows"}


@pytest.mark.django_db
def test_bench_commissions_accrues_every_deal_once_and_prints_its_figures():
    completed = subprocess.run(  # noqa: S603 — our own module, fixed arguments
        [
            sys.executable,
            "-m",
            "brokerdesk.partners.bench",
            "--json",
            *("--ibs", "300", "--levels", "5", "--samples", "5"),
            *("--deals", "3000", "--clients", "200", "--batch", "1000"),
        ],
        env=bench_environment("partners_bench"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    assert figures.keys() >= REQUIRED
    assert figures["engine"] == connection.vendor
    assert (figures["deals"], figures["ibs"], figures["levels"]) == (3000, 300, 5)
    accrual = figures["accrual"]
    assert accrual["rerun_added_rows"] == 0 == figures["rerun_added_rows"]
    assert accrual["orphan_rows"] == 0 and figures["closure_differences"] == 0
    # every deal is either commissioned (one accrual per earning level) or excluded
    assert accrual["accruals"] >= 3000 - accrual["exclusions"] > 0
    assert figures["seconds"] == accrual["seconds"] > 0 and figures["deals_per_s"] > 0
