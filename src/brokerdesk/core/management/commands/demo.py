"""``brokerdesk demo``: everything on the embedded default, with demo data, in one command.

Migrates, collects static files, seeds demo data (each installed module's ``demo.seed()``,
idempotent), then runs until Ctrl-C: the web server, the worker (relay, consumers, periodic
jobs), the sandbox PSP, the MT5 simulator with simulated trading, and the bridge from the
simulator to the bus; it prints the URLs and demo logins. ``--no-serve`` seeds and exits.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import secrets
import signal
import subprocess
import sys
import time
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from brokerdesk.core.management.commands.serve import gunicorn_argv

DEMO_STAFF = ("admin", "brokerdesk-demo")
SANDBOX_PSP_PORT = 7100
SIMULATOR_PORT = 7001


def _sandbox_secret() -> str:
    """The sandbox PSP's webhook signing secret, made once and kept in the data directory."""
    path = settings.DATA_DIR / "sandbox_psp_secret"
    if not path.exists():
        path.write_text(f"whsec_{secrets.token_urlsafe(24)}")
        path.chmod(0o600)
    return path.read_text().strip()


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "brokerdesk.cli", *args]


def seed_all(stdout: Any) -> None:
    """Run each installed Brokerdesk module's ``demo.seed()`` in INSTALLED_APPS order."""
    for config in apps.get_app_configs():
        if not config.name.startswith("brokerdesk."):
            continue
        module_name = f"{config.name}.demo"
        if importlib.util.find_spec(module_name) is None:
            continue
        module = importlib.import_module(module_name)
        summary = module.seed()
        stdout.write(f"  demo data: {config.label}: {summary}")


class Command(BaseCommand):
    help = "Set up and run Brokerdesk with demo data on the embedded default."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default="127.0.0.1:8000", help="host:port to serve on")
        parser.add_argument("--port", type=int, help="serve on 127.0.0.1:PORT (instead of --bind)")
        parser.add_argument("--no-serve", action="store_true", help="seed, then exit")

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        seed_all(self.stdout)
        if options["no_serve"]:
            return
        if options["port"]:
            options["bind"] = f"127.0.0.1:{options['port']}"
        base = f"http://{options['bind']}"
        os.environ.setdefault("SANDBOX_PSP_SECRET", _sandbox_secret())
        os.environ.setdefault("SANDBOX_PSP_URL", f"http://127.0.0.1:{SANDBOX_PSP_PORT}")
        os.environ.setdefault("PLATFORM_SERVERS", f"sim=simulator://127.0.0.1:{SIMULATOR_PORT}")
        psp = _command(
            "sandbox-psp",
            "--port",
            str(SANDBOX_PSP_PORT),
            "--webhook-url",
            f"{base}/api/v1/payments/webhooks/sandbox",
        )
        simulator = _command("simulator", "mt5", "--port", str(SIMULATOR_PORT), "--rate", "5")
        children = [
            subprocess.Popen(gunicorn_argv(options["bind"], 2, 4)),  # noqa: S603
            subprocess.Popen(_command("worker")),  # noqa: S603
            subprocess.Popen(psp),  # noqa: S603
            subprocess.Popen(simulator),  # noqa: S603
        ]
        time.sleep(2)  # let the simulator listen before the bridge connects
        children.append(subprocess.Popen(_command("bridge", "--server", "sim")))  # noqa: S603
        self.stdout.write(
            "\nBrokerdesk is running:\n"
            f"  home            {base}/\n"
            f"  client portal   {base}/portal/      sign in client@example.com / {DEMO_STAFF[1]}\n"
            f"  back office     {base}/backoffice/  sign in admin@example.com / {DEMO_STAFF[1]}"
            " (set up two-factor at first sign-in)\n"
            f"  IB portal       {base}/partners/    sign in partner@example.com / {DEMO_STAFF[1]}\n"
            f"  prop trader     {base}/portal/      sign in trader@example.com / {DEMO_STAFF[1]}\n"
            f"  API docs        {base}/api/v1/docs\n"
            f"  metrics         {base}/metrics\n"
            f"  sandbox PSP     http://127.0.0.1:{SANDBOX_PSP_PORT}/\n"
            f"  MT5 simulator   127.0.0.1:{SIMULATOR_PORT}, bridged to the bus as server 'sim'\n"
            "Press Ctrl-C to stop.\n"
        )
        self._wait(children)

    def _wait(self, children: list[subprocess.Popen[bytes]]) -> None:
        stopping = False

        def stop(*_: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not stopping and all(c.poll() is None for c in children):
            time.sleep(0.5)
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
