"""``brokerdesk worker``: the relay plus every registered consumer, in one process."""

from __future__ import annotations

import json
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from brokerdesk.core.bus.factory import get_bus
from brokerdesk.core.consumers import autodiscover
from brokerdesk.core.runtime import tune_gc
from brokerdesk.core.worker import drain, run_worker


class Command(BaseCommand):
    help = "Run the outbox relay and all registered consumers (threads) until SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="drain everything and exit")
        parser.add_argument("--no-relay", action="store_true", help="consumers only")
        parser.add_argument(
            "--consumer", action="append", default=[], help="run only these (repeatable)"
        )
        parser.add_argument("--bus", default=None, help="bus URL (default settings.BUS_URL)")

    def handle(self, *args: Any, **options: Any) -> None:
        specs = autodiscover()
        tune_gc()
        if options["consumer"]:
            unknown = set(options["consumer"]) - set(specs)
            if unknown:
                raise CommandError(f"unknown consumers: {', '.join(sorted(unknown))}")
            specs = {name: specs[name] for name in options["consumer"]}
        bus = get_bus(options["bus"])
        try:
            if options["once"]:
                totals = drain(bus, specs.values())
                self.stdout.write(
                    json.dumps(
                        {
                            name: {
                                "processed": r.processed,
                                "duplicates": r.duplicates,
                                "dead_lettered": r.dead_lettered,
                            }
                            for name, r in totals.items()
                        }
                    )
                )
                return
            stop = threading.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
            run_worker(bus, stop, specs.values(), relay=not options["no_relay"])
        finally:
            bus.close()
