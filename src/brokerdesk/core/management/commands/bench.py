"""``brokerdesk bench NAME …``: run a module's benchmark against its own empty database.

``NAME`` is a module with a ``bench`` submodule (``ledger`` → ``brokerdesk.ledger.bench``);
the remaining arguments go to it. The benchmark runs in a child process pointed at a fresh
``*_bench`` database on the configured server, so product data is never touched.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from brokerdesk.core.benchdb import bench_environment

# Names the issues use for a module's benchmark.
ALIASES = {
    "ingest": "trading",
    "commissions": "partners",
    "screening": "compliance",
    "scale": "reporting",
}


class Command(BaseCommand):
    help = (
        "Run a benchmark (ledger, ingest, commissions, payments, screening) and print its "
        "figures; see `brokerdesk bench NAME -h`."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="which benchmark: ledger, …")
        parser.add_argument("args", nargs="*", help="arguments for the benchmark")

    def run_from_argv(self, argv: list[str]) -> None:
        # Pass every option after NAME straight to the benchmark (argparse would eat them).
        if len(argv) < 3 or argv[2].startswith("-"):
            super().run_from_argv(argv)
            return
        self._run(argv[2], argv[3:])

    def handle(self, *args: Any, **options: Any) -> None:
        self._run(options["name"], options["args"])

    def _run(self, name: str, args: list[str]) -> None:
        name = ALIASES.get(name, name)
        module = f"brokerdesk.{name}.bench"
        if importlib.util.find_spec(f"brokerdesk.{name}") is None or (
            importlib.util.find_spec(module) is None
        ):
            raise CommandError(f"No benchmark named {name!r}.")
        env = bench_environment()
        completed = subprocess.run([sys.executable, "-m", module, *args], env=env, check=False)  # noqa: S603
        if completed.returncode:
            raise CommandError(f"benchmark {name} failed with exit code {completed.returncode}")
