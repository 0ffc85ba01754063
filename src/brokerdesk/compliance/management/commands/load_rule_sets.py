"""``manage.py load_rule_sets [FILE …]``: publish jurisdiction rule sets (bundled by default)."""

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from brokerdesk.compliance import services


class Command(BaseCommand):
    """Publish rule-set versions from JSON files (an existing identical version is a no-op)."""

    help = "Publish jurisdiction rule sets from JSON files (default: the bundled ones)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="*", type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        files: list[Path] = options["files"]
        if not files:
            rows = services.load_bundled_rule_sets(by="system:load_rule_sets")
        else:
            rows = [
                services.publish_rule_set(
                    json.loads(f.read_text()), by="system:load_rule_sets", reason=f"file {f.name}"
                )
                for f in files
            ]
        for row in rows:
            self.stdout.write(f"{row.jurisdiction} v{row.version} ({row.checksum[:12]})")
