"""``brokerdesk sandbox-psp`` runs the sandbox PSP as a separate process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

import pytest
from django.core.management import CommandError, call_command

from tests.payments.conftest import API_KEY, SECRET


def test_the_command_serves_payments_on_a_free_port_until_interrupted(tmp_path):
    env = {
        **os.environ,
        "SANDBOX_PSP_SECRET": SECRET,
        "SANDBOX_PSP_API_KEY": API_KEY,
        "BROKERDESK_DATA_DIR": str(tmp_path),
    }
    errors = tmp_path / "stderr.log"  # a file, not a pipe: a chatty child never blocks on it
    stderr = errors.open("w")
    process = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-m",
            "brokerdesk.cli",
            "sandbox-psp",
            "--port",
            "0",
            "--settlement-dir",
            str(tmp_path / "stl"),
        ],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=env,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert line.startswith("listening http://127.0.0.1:"), errors.read_text()
        url = line.split()[1]
        request = urllib.request.Request(  # noqa: S310
            f"{url}/v1/payments",
            data=json.dumps({"amount": 500, "currency": "EUR", "reference": "cmd-1"}).encode(),
            headers={"Authorization": f"Bearer {API_KEY}"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            payment = json.loads(response.read())
        assert payment["status"] == "pending" and payment["pay_url"].startswith(url)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)  # generous: the machine may be busy with the other suite
        stderr.close()
    assert SECRET not in errors.read_text()


def test_the_command_refuses_to_start_without_a_signing_secret(monkeypatch):
    monkeypatch.delenv("SANDBOX_PSP_SECRET", raising=False)

    with pytest.raises(CommandError, match="SANDBOX_PSP_SECRET"):
        call_command("sandbox_psp", "--port", "0")
