"""Fixtures: a simulator process on a free port, and adapters against it or against the fakes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class SimProcess:
    """A running ``brokerdesk simulator mt5``."""

    port: int
    deal_log: Path
    process: subprocess.Popen[str]


def start_simulator(tmp: Path, *args: str) -> SimProcess:
    """Start the simulator on a free port and wait for its "listening" line."""
    deal_log = tmp / "deals.jsonl"
    env = {**os.environ, "BROKERDESK_DATA_DIR": str(tmp)}
    process = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-m",
            "brokerdesk.cli",
            "simulator",
            "mt5",
            "--port",
            "0",
            "--deal-log",
            str(deal_log),
            *args,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("listening"):
        process.kill()
        process.wait()
        raise RuntimeError(f"simulator did not start: {line!r}")
    port = int(line.split()[1].rsplit(":", 1)[1])
    return SimProcess(port, deal_log, process)


def stop_simulator(sim: SimProcess) -> None:
    """SIGTERM, then wait (kill if it hangs)."""
    sim.process.terminate()
    try:
        sim.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        sim.process.kill()
        sim.process.wait()
    if sim.process.stdout is not None:
        sim.process.stdout.close()


@pytest.fixture(scope="session")
def contract_simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    """One quiet simulator (no simulated clients) for the contract suite."""
    sim = start_simulator(
        tmp_path_factory.mktemp("contract-sim"),
        "--rate",
        "0",
        "--tick-seconds",
        "0",
        "--traders",
        "0",
        "--seed",
        "7",
    )
    yield sim
    stop_simulator(sim)


@pytest.fixture
def make_simulator(tmp_path: Path) -> Iterator[object]:
    """Start simulators with given options; all are stopped at the end of the test."""
    started: list[SimProcess] = []

    def make(*args: str) -> SimProcess:
        sim = start_simulator(tmp_path, *args)
        started.append(sim)
        return sim

    yield make
    for sim in started:
        stop_simulator(sim)


def deal_closed_payloads() -> list[dict[str, object]]:
    """The ``trading.deal_closed`` payloads in the outbox, as consumers receive them: the
    ingest's ``trading.deals_closed`` batch events expanded, single events as they are."""
    from brokerdesk.core.bus.base import Message
    from brokerdesk.core.bus.batch import expand_all
    from brokerdesk.core.models import OutboxEvent

    rows = OutboxEvent.objects.filter(
        type__in=["trading.deal_closed", "trading.deals_closed"]
    ).order_by("occurred_at", "id")
    messages = [
        Message(str(e.id), e.stream, e.type, e.payload, e.occurred_at.isoformat()) for e in rows
    ]
    return [m.payload for m in expand_all(messages) if m.type == "trading.deal_closed"]
