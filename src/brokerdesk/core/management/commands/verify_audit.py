"""``brokerdesk verify-audit``: check the audit log's hash chain end to end."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from brokerdesk.core.audit import verify_chain


class Command(BaseCommand):
    help = "Verify the audit log's hash chain; exit non-zero at the first broken link."

    def handle(self, *args: Any, **options: Any) -> None:
        report = verify_chain()
        self.stdout.write(json.dumps(report.__dict__))
        if not report.ok:
            raise CommandError(
                f"audit chain {report.chain} broken at #{report.first_bad_seq}: {report.problem}"
            )
