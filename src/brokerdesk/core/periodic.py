"""Periodic jobs run by the worker: housekeeping that must happen on a schedule.

A module declares a job in its ``consumers.py`` (which the worker imports)::

    @periodic("ledger.expire_pending", every_s=5)
    def expire() -> None: ...

Each job runs in the worker's periodic thread, in its own transaction, and a failure is
logged and retried at the next tick.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from django.db import close_old_connections

log = structlog.get_logger(__name__)


@dataclass
class Job:
    """A function to call every ``every_s`` seconds."""

    name: str
    every_s: float
    func: Callable[[], object]
    next_at: float = 0.0


_JOBS: dict[str, Job] = {}


def periodic(
    name: str, *, every_s: float
) -> Callable[[Callable[[], object]], Callable[[], object]]:
    """Register the decorated function as a periodic job."""

    def wrap(func: Callable[[], object]) -> Callable[[], object]:
        _JOBS[name] = Job(name, every_s, func)
        return func

    return wrap


def jobs() -> dict[str, Job]:
    """The registered jobs by name."""
    return dict(_JOBS)


def run_due(now: float | None = None) -> list[str]:
    """Run every job whose time has come; return the names that ran."""
    now = time.monotonic() if now is None else now
    ran = []
    for job in _JOBS.values():
        if now < job.next_at:
            continue
        job.next_at = now + job.every_s
        try:
            result = job.func()
            log.debug("periodic_job_ran", job=job.name, result=str(result))
        except Exception:
            log.exception("periodic_job_failed", job=job.name)
        ran.append(job.name)
    return ran


def periodic_loop(stop: threading.Event, tick_s: float = 1.0) -> None:
    """Run due jobs until ``stop`` is set."""
    while not stop.is_set():
        close_old_connections()
        run_due()
        stop.wait(tick_s)
