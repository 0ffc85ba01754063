"""An injectable clock: code asks ``clock.now()``; tests freeze or move it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

_local = threading.local()
_default: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731


def now() -> datetime:
    """The current time, timezone-aware (UTC)."""
    override: Callable[[], datetime] | None = getattr(_local, "override", None)
    return (override or _default)()


class FrozenClock:
    """A clock that stands still until moved; used by tests and replays."""

    def __init__(self, start: datetime) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward."""
        self.current += delta


@contextlib.contextmanager
def frozen(at: datetime) -> Iterator[FrozenClock]:
    """Freeze ``now()`` in this thread at ``at`` for the duration of the block."""
    previous = getattr(_local, "override", None)
    clock = FrozenClock(at)
    _local.override = clock
    try:
        yield clock
    finally:
        _local.override = previous
