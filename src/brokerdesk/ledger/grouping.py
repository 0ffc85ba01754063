"""Group commit: many concurrent posting requests, one database transaction.

Callers in any thread ``submit`` a unit (one request or a linked chain) and wait for its own
outcome. A single committer thread drains the queue — whatever is waiting, up to
``max_batch``, or what arrives within ``max_wait_ms`` of the first — and runs it through
``services.post_batch``. Each request is still validated, balanced and idempotent on its
own; the batch only shares the locks, the round trips and the commit.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import Any

from django.db import connection

from brokerdesk.core.errors import DomainError
from brokerdesk.ledger.services import Outcome, Request, TransferResult, Unit, post_batch

_STOP = object()


class _Slot:
    """Where one ``post`` waits for its outcome: a lock the committer releases (lighter than a
    ``Future``, whose condition variable costs each waiter more wake-ups and allocations)."""

    __slots__ = ("_done", "_error", "_outcomes")

    def __init__(self) -> None:
        self._done = threading.Lock()
        self._done.acquire()
        self._outcomes: list[Outcome] | None = None
        self._error: BaseException | None = None

    def set_result(self, outcomes: list[Outcome]) -> None:
        self._outcomes = outcomes
        self._done.release()

    def set_exception(self, error: BaseException) -> None:
        self._error = error
        self._done.release()

    def result(self, timeout: float) -> list[Outcome]:
        if not self._done.acquire(timeout=timeout):
            raise TimeoutError("The ledger's group commit did not answer in time.")
        if self._error is not None:
            raise self._error
        assert self._outcomes is not None
        return self._outcomes


class GroupCommitter:
    """A committer thread that posts queued units in batches."""

    def __init__(self, *, max_batch: int = 500, max_wait_ms: float = 2.0) -> None:
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ledger-group-commit", daemon=True)
        self.batches = 0
        self._thread.start()

    def submit(self, unit: Unit) -> Future[list[Outcome]]:
        """Queue a unit; the future resolves to its outcomes once its batch commits."""
        future: Future[list[Outcome]] = Future()
        self._queue.put((list(unit), future))
        return future

    def post(self, request: Request, timeout: float = 30.0) -> TransferResult:
        """Post one request through the group and wait; raise its domain error if it failed."""
        slot = _Slot()
        self._queue.put(([request], slot))
        (outcome,) = slot.result(timeout)
        if isinstance(outcome, DomainError):
            raise outcome
        return outcome

    def close(self) -> None:
        """Finish what is queued and stop the thread."""
        self._queue.put(_STOP)
        self._thread.join()

    def _collect(self, first: Any) -> tuple[list[Any], bool]:
        batch, stopping = [first], False
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is _STOP:
                stopping = True
                break
            batch.append(item)
        return batch, stopping

    def _run(self) -> None:
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    return
                batch, stopping = self._collect(first)
                self._commit(batch)
                if stopping:
                    return
        finally:
            connection.close()

    def _commit(self, batch: list[Any]) -> None:
        try:
            outcomes = post_batch([unit for unit, _ in batch])
        except Exception as exc:  # the whole batch failed (database down): tell every caller
            for _, future in batch:
                future.set_exception(exc)
            return
        self.batches += 1
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            future.set_result(outcome)
