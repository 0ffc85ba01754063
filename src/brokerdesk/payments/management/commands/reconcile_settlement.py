"""``brokerdesk reconcile-settlement FILE --provider sandbox``: reconcile one settlement file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from brokerdesk.payments.reconciliation import reconcile_settlement


class Command(BaseCommand):
    """Match a PSP settlement CSV to the ledger; exit 1 when there are exceptions."""

    help = "Reconcile a PSP settlement file against the ledger; mismatches go to the queue."

    def add_arguments(self, parser: CommandParser) -> None:
        """Options."""
        parser.add_argument("file")
        parser.add_argument("--provider", default="sandbox")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **opts: Any) -> None:
        """Run."""
        path = Path(opts["file"])
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        report = reconcile_settlement(
            path.read_text(encoding="utf-8"), provider=opts["provider"], source=str(path)
        )
        summary = {
            "run_id": str(report.run_id),
            "rows": report.rows,
            "matched": report.matched,
            "exceptions": report.exceptions,
        }
        if opts["json"]:
            self.stdout.write(json.dumps(summary))
        else:
            self.stdout.write(
                f"{report.rows} rows, {report.matched} matched, {len(report.exceptions)} exceptions"
            )
            for e in report.exceptions:
                self.stdout.write(f"  {e['kind']}: {e['detail']}")
        if not report.clean:
            raise SystemExit(1)
