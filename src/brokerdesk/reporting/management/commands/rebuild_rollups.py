"""``brokerdesk rebuild-rollups``: empty the reporting rollups and replay the stored events."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from brokerdesk.reporting.services import rebuild_rollups


class Command(BaseCommand):
    help = "Rebuild the reporting rollups from the stored outbox events (one transaction)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--actor", default="system:rebuild-rollups", help="who asks (audit)")

    def handle(self, *args: Any, **options: Any) -> None:
        result = rebuild_rollups(actor=options["actor"])
        self.stdout.write(json.dumps({"events": result.events, "facts": result.facts}))
