"""``python -m brokerdesk.core.drills.slow_worker --delay-file F``: a slow consumer, on purpose.

The same process as ``brokerdesk worker`` (every consumer, the relay, the periodic jobs), except
that the ``trading.ingest`` handler first sleeps ``delay`` milliseconds per message, where
``delay`` is the number in ``F`` (re-read at most every 0.2 s; missing or empty means 0). The
drill writes a delay to make the consumer fall behind the firehose, then 0 to let it drain,
without restarting the process.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

INGEST = "trading.ingest"


class DelayFile:
    """The injected per-message delay, read from a file the drill writes."""

    def __init__(self, path: Path, every_s: float = 0.2) -> None:
        self.path = path
        self.every_s = every_s
        self._value = 0.0
        self._read_at = 0.0

    def seconds_per_message(self) -> float:
        """The current delay in seconds."""
        now = time.monotonic()
        if now - self._read_at >= self.every_s:
            self._read_at = now
            try:
                self._value = float(self.path.read_text().strip() or 0) / 1000
            except (OSError, ValueError):
                self._value = 0.0
        return self._value


def slowed(handler: Callable[[list[Any]], None], delay: DelayFile) -> Callable[[list[Any]], None]:
    """``handler`` preceded by the injected delay for each message of the batch."""

    def slow_handler(messages: list[Any]) -> None:
        pause = delay.seconds_per_message() * len(messages)
        if pause:
            time.sleep(pause)
        handler(messages)

    return slow_handler


def main(argv: list[str] | None = None) -> int:
    """Run the worker with the slowed ingest consumer until SIGTERM."""
    parser = argparse.ArgumentParser(prog="slow_worker")
    parser.add_argument("--delay-file", type=Path, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brokerdesk.settings")
    import django

    django.setup()
    from brokerdesk.core.bus.factory import get_bus
    from brokerdesk.core.consumers import autodiscover
    from brokerdesk.core.worker import run_worker

    specs = autodiscover()
    delay = DelayFile(args.delay_file)
    consumers = [
        dataclasses.replace(spec, handler=slowed(spec.handler, delay)) if name == INGEST else spec
        for name, spec in specs.items()
    ]
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    bus = get_bus()
    try:
        run_worker(bus, stop, consumers)
    finally:
        bus.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
