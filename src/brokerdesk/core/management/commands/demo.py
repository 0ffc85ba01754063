"""``brokerdesk demo``: everything on the embedded default, with demo data, in one command.

Migrates, collects static files, seeds demo data (each installed module's ``demo.seed()``,
idempotent), then runs the worker and the web server until Ctrl-C, and prints the URLs and
demo logins. ``--no-serve`` seeds and exits (used by tests and CI).
"""

from __future__ import annotations

import importlib
import importlib.util
import signal
import subprocess
import sys
import time
from typing import Any

from django.apps import apps
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from brokerdesk.core.management.commands.serve import gunicorn_argv

DEMO_STAFF = ("admin", "brokerdesk-demo")


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
        parser.add_argument("--bind", default="127.0.0.1:8000")
        parser.add_argument("--no-serve", action="store_true", help="seed, then exit")

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        seed_all(self.stdout)
        if options["no_serve"]:
            return
        children = [
            subprocess.Popen(gunicorn_argv(options["bind"], 2, 4)),  # noqa: S603
            subprocess.Popen([sys.executable, "-m", "brokerdesk.cli", "worker"]),
        ]
        base = f"http://{options['bind']}"
        self.stdout.write(
            "\nBrokerdesk is running:\n"
            f"  home           {base}/\n"
            f"  back office    {base}/backoffice/admin/   login {DEMO_STAFF[0]} / {DEMO_STAFF[1]}\n"
            f"  API docs       {base}/api/docs\n"
            f"  metrics        {base}/metrics\n"
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
