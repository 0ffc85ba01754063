"""``brokerdesk replay-ledger``: rebuild every balance from the entries, report differences."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from brokerdesk.ledger.queries import replay_ledger


class Command(BaseCommand):
    help = "Rebuild every ledger balance from the entries and report each difference."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print the report as JSON")
        parser.add_argument(
            "--no-hashes", action="store_true", help="skip the per-account hash-chain check"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = replay_ledger(verify_hashes=not options["no_hashes"])
        if options["json"]:
            body = {
                "accounts": report.accounts,
                "entries": report.entries,
                "transfers": report.transfers,
                "clean": report.clean,
                "differences": [asdict(d) for d in report.differences],
                "unbalanced_transfers": report.unbalanced_transfers,
            }
            self.stdout.write(json.dumps(body, default=str))
        else:
            self.stdout.write(
                f"{report.accounts} accounts, {report.transfers} transfers, "
                f"{report.entries} entries replayed."
            )
            for d in report.differences:
                self.stdout.write(
                    f"  {d.account_id} {d.field}: stored {d.stored}, replayed {d.replayed}"
                )
            for t in report.unbalanced_transfers:
                self.stdout.write(f"  transfer {t} does not balance")
        if not report.clean:
            raise CommandError(
                f"{len(report.differences)} differences, "
                f"{len(report.unbalanced_transfers)} unbalanced transfers"
            )
        if not options["json"]:
            self.stdout.write("Clean: every balance equals its entries.")
