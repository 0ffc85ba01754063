"""``brokerdesk relay``: publish outbox events to the bus, in a loop or ``--once``."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from brokerdesk.core.bus.factory import get_bus
from brokerdesk.core.relay import relay_all
from brokerdesk.core.runtime import tune_gc
from brokerdesk.core.worker import relay_loop


class Command(BaseCommand):
    help = "Relay outbox events to the bus (settings.BUS_URL) until stopped."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="relay what is there and exit")
        parser.add_argument("--interval", type=float, default=0.2, help="poll seconds")
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument("--bus", default=None, help="bus URL (default settings.BUS_URL)")
        parser.add_argument(
            "--pack",
            type=int,
            default=None,
            help="messages per Redis stream entry (default: the bus URL's pack, else 1)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        tune_gc()
        bus = get_bus(options["bus"], pack=options["pack"])
        try:
            if options["once"]:
                count = relay_all(bus, options["batch_size"])
                self.stdout.write(f"relayed {count} events")
                return
            stop = threading.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
            relay_loop(bus, stop, interval_s=options["interval"], batch_size=options["batch_size"])
        finally:
            bus.close()
