"""``brokerdesk simulator mt5``: run the simulated MT5 trade server."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from brokerdesk.core.runtime import tune_gc
from brokerdesk.trading.simulator.server import Faults, run_simulator


class Command(BaseCommand):
    """Serve the simulator protocol on --host/--port until interrupted."""

    help = "Run a simulated trade server (MT5 semantics) speaking newline-delimited JSON over TCP."

    def add_arguments(self, parser: CommandParser) -> None:
        """Options."""
        parser.add_argument("platform", choices=["mt5"], help="platform to simulate")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=7001, help="0 picks a free port")
        parser.add_argument("--rate", type=float, default=0.0, help="simulated deals per second")
        parser.add_argument("--traders", type=int, default=50, help="simulated client logins")
        parser.add_argument(
            "--faults",
            default="",
            help="e.g. duplicate=0.05,reorder=0.05,drop_after=1000,lose=0.1,delay_ms=200",
        )
        parser.add_argument("--seed", type=int, default=None)
        parser.add_argument("--name", default="sim")
        parser.add_argument("--manager-password", default="")
        parser.add_argument(
            "--deal-log",
            default=None,
            help="append-only JSONL of every deal (default DATA_DIR/simulator/<name>-deals.jsonl)",
        )
        parser.add_argument("--duration", type=float, default=0.0, help="stop after N seconds")
        parser.add_argument(
            "--tick-seconds",
            type=float,
            default=0.1,
            help="price feed step (0 freezes prices, and so stop-outs)",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        """Run."""
        try:
            faults = Faults.parse(opts["faults"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        deal_log = (
            Path(opts["deal_log"])
            if opts["deal_log"]
            else (Path(settings.DATA_DIR) / "simulator" / f"{opts['name']}-deals.jsonl")
        )

        def ready(port: int) -> None:
            tune_gc()  # set up (traders, deposits): a long-running firehose from here on
            # One line a supervisor (or a test) can read to learn the bound port.
            sys.stdout.write(f"listening {opts['host']}:{port} deal_log={deal_log}\n")
            sys.stdout.flush()

        run_simulator(
            host=opts["host"],
            port=opts["port"],
            rate=opts["rate"],
            faults=faults,
            traders=opts["traders"],
            seed=opts["seed"],
            deal_log_path=deal_log,
            name=opts["name"],
            manager_password=opts["manager_password"],
            ready=ready,
            duration=opts["duration"],
            tick_seconds=opts["tick_seconds"],
        )
