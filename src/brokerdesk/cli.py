"""The ``brokerdesk`` command: Django's management commands, with dashed names allowed.

``brokerdesk replay-ledger`` runs the ``replay_ledger`` command, ``brokerdesk bench ledger``
runs ``bench`` with ``ledger`` as its argument, and so on.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    """Run a Brokerdesk command."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brokerdesk.settings")
    from django.core.management import execute_from_command_line

    args = list(sys.argv[1:] if argv is None else argv)
    if args and not args[0].startswith("-"):
        args[0] = args[0].replace("-", "_")
    execute_from_command_line(["brokerdesk", *args])


if __name__ == "__main__":
    main()
