"""``manage.py bench_screening [--json] [--list-size N] [--clients N]``."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from brokerdesk.compliance.bench import run


class Command(BaseCommand):
    """Time sanctions screening on a synthetic list and report precision and recall."""

    help = "Benchmark sanctions screening (synthetic list) and evaluate precision/recall."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("--list-size", type=int, default=100_000)
        parser.add_argument("--clients", type=int, default=2_000)

    def handle(self, *args: Any, **options: Any) -> None:
        figures = run(list_size=options["list_size"], clients=options["clients"])
        if options["json"]:
            self.stdout.write(json.dumps(figures))
        else:
            for key, value in figures.items():
                self.stdout.write(f"{key}: {value}")
