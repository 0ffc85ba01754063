"""``brokerdesk bus-depth``: JSON status of the outbox and each consumer's backlog and lag."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Count, Max

from brokerdesk.core.bus.factory import get_bus
from brokerdesk.core.consumers import autodiscover, observe_depth
from brokerdesk.core.models import DeadLetter, OutboxEvent, ProcessedEvent
from brokerdesk.core.relay import unrelayed_count


class Command(BaseCommand):
    help = "Print stream depth, pending and lag per consumer as JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bus", default=None, help="bus URL (default settings.BUS_URL)")

    def handle(self, *args: Any, **options: Any) -> None:
        specs = autodiscover()
        bus = get_bus(options["bus"])
        try:
            depths = observe_depth(bus, specs.values())
        finally:
            bus.close()
        now = datetime.now(UTC)
        last_processed = dict(
            ProcessedEvent.objects.values_list("consumer").annotate(last=Max("processed_at"))
        )
        dead = dict(
            DeadLetter.objects.filter(resolved_at__isnull=True)
            .values_list("consumer")
            .annotate(n=Count("id"))
        )
        oldest = (
            OutboxEvent.objects.filter(relayed_at__isnull=True)
            .order_by("id")
            .values_list("occurred_at", flat=True)
            .first()
        )
        report = {
            "outbox": {
                "unrelayed": unrelayed_count(),
                "oldest_unrelayed_age_s": (now - oldest).total_seconds() if oldest else 0.0,
            },
            "consumers": [
                {
                    "consumer": d.group,
                    "stream": d.stream,
                    "length": d.length,
                    "undelivered": d.undelivered,
                    "pending": d.pending,
                    "dead_letters": dead.get(d.group, 0),
                    "seconds_since_last_processed": (
                        (now - last_processed[d.group]).total_seconds()
                        if d.group in last_processed
                        else None
                    ),
                }
                for d in depths
            ],
        }
        self.stdout.write(json.dumps(report, indent=2))
