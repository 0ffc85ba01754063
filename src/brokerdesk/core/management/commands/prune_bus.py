"""``brokerdesk prune-bus``: drop old, consumed embedded-bus messages and processed ids."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from brokerdesk.core.bus.outbox import OutboxBus
from brokerdesk.core.consumers import prune_processed


class Command(BaseCommand):
    help = "Delete embedded-bus messages every group has acknowledged, and old processed ids."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=float, default=7.0, help="keep this many days")
        parser.add_argument(
            "--processed-days", type=float, default=30.0, help="keep processed ids this long"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        now = datetime.now(UTC)
        messages = OutboxBus().trim(now - timedelta(days=options["days"]))
        processed = prune_processed(now - timedelta(days=options["processed_days"]))
        self.stdout.write(json.dumps({"bus_messages": messages, "processed_events": processed}))
