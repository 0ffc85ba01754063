"""``brokerdesk translations extract|check|compile|todo|apply``: keep the catalogues complete.

``todo --locale X`` prints the entries still to translate as JSON; ``apply --locale X --file F``
writes a JSON list of translations (``msgid``, ``msgstr`` or ``msgstr_plural``) into X.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from brokerdesk.core import translations


class Command(BaseCommand):
    """Extract new strings, check completeness, or compile the catalogues."""

    help = "extract: update the .po files; check: list what is untranslated; compile: write .mo"

    def add_arguments(self, parser: CommandParser) -> None:
        """One action, and optionally the locales it applies to."""
        parser.add_argument("action", choices=["extract", "check", "compile", "todo", "apply"])
        parser.add_argument("--locale", action="append", default=None)
        parser.add_argument("--file", help="apply: a JSON list of translations")

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the action."""
        action = options["action"]
        locales = options["locale"] or translations.target_locales()
        if action == "extract":
            translations.extract(locales)
            self.stdout.write(f"updated {len(locales)} catalogues")
        elif action == "todo":
            self.stdout.write(
                json.dumps(translations.todo(locales[0]), ensure_ascii=False, indent=1)
            )
        elif action == "apply":
            if not options["file"]:
                raise CommandError("apply needs the JSON file of translations")
            items = json.loads(Path(options["file"]).read_text(encoding="utf-8"))
            self.stdout.write(f"{translations.apply(locales[0], items)} entries written")
        elif action == "compile":
            self.stdout.write(f"compiled {translations.compile_all()} catalogues")
        else:
            expected = translations.source_messages()
            found = [p for locale in locales for p in translations.problems(locale, expected)]
            for problem in found:
                self.stdout.write(problem)
            if found:
                raise CommandError(f"{len(found)} problems in the translation catalogues")
            self.stdout.write(f"{len(locales)} catalogues complete ({len(expected)} messages)")
