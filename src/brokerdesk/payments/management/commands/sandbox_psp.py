"""``brokerdesk sandbox-psp``: run the sandbox PSP as a separate local HTTP service."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from brokerdesk.payments.sandbox.server import Faults, SandboxPSP


class Command(BaseCommand):
    """Serve the sandbox PSP on --host/--port until interrupted."""

    help = "Run the sandbox PSP: payments, payouts, signed webhooks, faults, settlement files."

    def add_arguments(self, parser: CommandParser) -> None:
        """Options."""
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=7100, help="0 picks a free port")
        parser.add_argument(
            "--webhook-url",
            default=os.environ.get(
                "SANDBOX_PSP_WEBHOOK_URL", "http://127.0.0.1:8000/api/v1/payments/webhooks/sandbox"
            ),
        )
        parser.add_argument(
            "--secret-env",
            default="SANDBOX_PSP_SECRET",
            help="variable holding the webhook signing secret (never on the command line)",
        )
        parser.add_argument("--api-key-env", default="SANDBOX_PSP_API_KEY")
        parser.add_argument("--fee-bps", type=int, default=150)
        parser.add_argument("--fee-fixed", type=int, default=0, help="minor units per payment")
        parser.add_argument(
            "--faults", default="", help="e.g. duplicate=delayed,duplicate_delay_ms=200,reorder=1"
        )
        parser.add_argument(
            "--settlement-dir", default=None, help="default DATA_DIR/sandbox-psp/settlements"
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        """Run."""
        secret = os.environ.get(opts["secret_env"], "")
        if not secret:
            raise CommandError(f"Set the webhook signing secret in ${opts['secret_env']}.")
        try:
            faults = Faults.parse(opts["faults"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        directory = Path(
            opts["settlement_dir"] or Path(settings.DATA_DIR) / "sandbox-psp" / "settlements"
        )
        psp = SandboxPSP(
            secret=secret,
            webhook_url=opts["webhook_url"],
            host=opts["host"],
            port=opts["port"],
            api_key=os.environ.get(opts["api_key_env"], "sk_sandbox"),
            fee_bps=opts["fee_bps"],
            fee_fixed=opts["fee_fixed"],
            settlement_dir=directory,
            faults=faults,
        )
        # Ctrl-C or SIGTERM stops it cleanly, even when started with SIGINT ignored (a shell's
        # background job).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        psp.start()
        sys.stdout.write(f"listening {psp.url} settlements={directory}\n")
        sys.stdout.flush()
        try:
            psp._stopping.wait()
        except KeyboardInterrupt:
            pass
        finally:
            psp.stop()
