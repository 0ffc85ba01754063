"""``brokerdesk support-mail FILE|-``: take one inbound e-mail (RFC 822) into support.

For an MTA pipe (Postfix ``mailbox_command``, an ``.forward`` or an alias ``|brokerdesk
support-mail -``) or a saved ``.eml`` file. Prints the ticket reference and whether the
message opened a ticket, went onto one, or was a repeat. Exit status 1 on an unusable message.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from brokerdesk.core.errors import DomainError
from brokerdesk.support import services


class Command(BaseCommand):
    help = "Take one inbound e-mail (a file, or - for standard input) into support."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", help="path of an RFC 822 message, or - for stdin")

    def handle(self, *args: Any, **options: Any) -> None:
        raw = self._read(options["source"])
        try:
            result = services.ingest_email(raw)
        except DomainError as error:
            raise CommandError(f"{error.code}: {error.message}") from error
        if result.duplicate:
            outcome = "duplicate (already taken in)"
        elif result.created:
            outcome = "new ticket"
        else:
            outcome = "reply added"
        dropped = f", {result.dropped} attachment(s) dropped" if result.dropped else ""
        self.stdout.write(f"{result.ticket.reference}: {outcome}{dropped}")

    def _read(self, source: str) -> bytes:
        if source == "-":
            return sys.stdin.buffer.read()
        path = Path(source)
        if not path.is_file():
            raise CommandError(f"{source}: no such file")
        return path.read_bytes()
