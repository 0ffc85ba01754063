"""``brokerdesk drill [--json] [--size N] [--rate R] [--only NAME]``: fault drills.

The drills (:mod:`brokerdesk.core.drill`) run in a child process, because they choose their
own database and bus (private servers, never the shared ones) before Django starts.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = (
        "Fault drills (worker/bridge SIGKILL, Redis and PostgreSQL restarts, a slow consumer) "
        "on private servers, each followed by the invariant checks."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print a JSON list of drills")
        parser.add_argument("--size", type=int, default=20, help="client journeys per drill")
        parser.add_argument("--rate", type=float, default=None, help="simulated deals/s")
        parser.add_argument("--only", action="append", default=[], help="run only this drill")

    def handle(self, *args: Any, **options: Any) -> None:
        argv = ["--size", str(options["size"])]
        if options["json"]:
            argv.append("--json")
        if options["rate"] is not None:
            argv += ["--rate", str(options["rate"])]
        for name in options["only"]:
            argv += ["--only", name]
        completed = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "brokerdesk.core.drill", *argv], check=False
        )
        if completed.returncode:
            raise CommandError(f"drill failed (exit code {completed.returncode})")
