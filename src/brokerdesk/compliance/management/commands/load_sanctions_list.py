"""``manage.py load_sanctions_list SOURCE FILE [--alt ALT] --format ofac_csv|ftm_json``."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from brokerdesk.compliance import services


class Command(BaseCommand):
    """Load a sanctions/PEP list version and re-screen every client when it changed."""

    help = "Load a sanctions or PEP list (OFAC sdn.csv or OpenSanctions FtM JSON lines)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source")
        parser.add_argument("file", type=Path)
        parser.add_argument("--format", choices=["ofac_csv", "ftm_json"], required=True)
        parser.add_argument("--alt", type=Path, help="OFAC alt.csv with aliases")

    def handle(self, *args: Any, **options: Any) -> None:
        alt: Path | None = options["alt"]
        row, hits = services.load_sanctions_list(
            options["source"],
            fmt=options["format"],
            content=options["file"].read_text(encoding="utf-8"),
            alt_content=alt.read_text(encoding="utf-8") if alt else "",
            by="system:load_sanctions_list",
        )
        self.stdout.write(f"{row.source}: {row.entry_count} entries, {hits} new hits")
