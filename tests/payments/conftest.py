"""Fixtures for the payments tests: clients, the sandbox PSP wired to the live server."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from brokerdesk.clients import services as client_services
from brokerdesk.compliance import services as compliance
from brokerdesk.compliance.kyc import KycState
from brokerdesk.ledger import queries as ledger_queries
from brokerdesk.ledger import services as ledger
from brokerdesk.payments import connectors, webhooks
from brokerdesk.payments import services as payments
from brokerdesk.payments.connectors.sandbox import SandboxConnector
from brokerdesk.payments.sandbox.server import SandboxPSP

SECRET = "whsec_test_" + "x" * 16
API_KEY = "sk_test_sandbox"
_seq = itertools.count(1)


@pytest.fixture(autouse=True, scope="session")
def webhook_processor_stopped() -> Iterator[None]:
    """Stop the webhook processor thread at the end (its connection would outlive the test
    database)."""
    yield
    webhooks.stop_processor()


@pytest.fixture(autouse=True)
def bundled_rule_sets(request: pytest.FixtureRequest) -> None:
    """The bundled jurisdiction rule sets (a flush between tests may have removed them)."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None:
        return
    request.getfixturevalue("transactional_db" if marker.kwargs.get("transaction") else "db")
    compliance.load_bundled_rule_sets()


@pytest.fixture(autouse=True)
def default_rules() -> Iterator[None]:
    """Each test starts from the default payment rules."""
    previous = payments.set_rules()
    yield
    payments.RULES = previous


def new_client(*, verified: bool) -> Any:
    """A CySEC-like individual; verified (KYC approved) or waiting for documents."""
    n = next(_seq)
    client = client_services.register_individual(
        email=f"payer{n}@example.com",
        first_name="Nikos",
        last_name=f"Payer{n}",
        date_of_birth=date(1985, 3, 2),
        country="CY",
        jurisdiction="cysec",
        phone="+357 22 123456",
        by="system:test",
    )
    if verified:
        for step in (KycState.UNDER_VERIFICATION, KycState.APPROVED):
            compliance.transition_kyc(
                client.pk, step, by="system:test", reason="test", provider="sumsub"
            )
    else:
        compliance.request_documents(client.pk, by="system:test", reason="onboarding")
    return client


def wallet(client_id: Any, currency: str = "USD", bucket: str = "cash") -> int:
    """The posted balance of a client's wallet bucket."""
    return ledger_queries.balance(ledger.wallet_account(client_id, currency, bucket).id).posted


class Receiver:
    """A bare webhook receiver that records what the sandbox PSP sends (no database)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[tuple[float, dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                import time

                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.lock:
                    outer.received.append((time.monotonic(), dict(self.headers), body))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(body) for _, _, body in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on a free port, stopped after the test."""
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()
    r.thread.join(timeout=5)


@pytest.fixture
def sandbox(live_server: Any, tmp_path: Any) -> Iterator[SandboxPSP]:
    """The sandbox PSP on a free port, sending webhooks to the live server's endpoint."""
    psp = SandboxPSP(
        secret=SECRET,
        api_key=API_KEY,
        webhook_url=f"{live_server.url}/api/v1/payments/webhooks/sandbox",
        settlement_dir=tmp_path / "settlements",
        retry_backoff_s=0.02,
    )
    psp.start()
    connectors.register(SandboxConnector(base_url=psp.url, api_key=API_KEY, webhook_secret=SECRET))
    try:
        yield psp
    finally:
        psp.stop()
        connectors.unregister("sandbox")


def pay(psp: SandboxPSP, deposit: Any) -> None:
    """The client completes the payment on the hosted page; wait for the webhooks."""
    import urllib.request

    request = urllib.request.Request(  # noqa: S310
        f"{deposit.pay_url}/complete", data=b"", method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 200
    assert psp.wait_idle(10)


@pytest.fixture
def local_psp(tmp_path: Any) -> Iterator[SandboxPSP]:
    """The sandbox PSP without a callback: tests hand its webhooks to the service in-process
    (so they can run inside a rolled-back test transaction)."""
    psp = SandboxPSP(secret=SECRET, api_key=API_KEY, settlement_dir=tmp_path, max_attempts=1)
    psp.start()
    connectors.register(SandboxConnector(base_url=psp.url, api_key=API_KEY, webhook_secret=SECRET))
    try:
        yield psp
    finally:
        psp.stop()
        connectors.unregister("sandbox")


def deliver(psp: SandboxPSP, provider_id: str, action: str) -> str:
    """Do ``action`` at the PSP and hand its signed webhook to the payments service."""
    from brokerdesk.payments.sandbox import signing

    psp.act(provider_id, action)
    event = [e for e in psp.events.values() if e["data"]["object"]["id"] == provider_id][-1]
    body = json.dumps(event).encode()
    headers = {signing.HEADER: signing.sign(body, SECRET)}
    return payments.receive_webhook("sandbox", body, headers)


def funded(psp: SandboxPSP, client: Any, amount: int, currency: str = "USD") -> Any:
    """A client with a confirmed deposit of ``amount`` by card; returns the deposit row."""
    from brokerdesk.payments.models import Deposit

    view = payments.create_deposit_intent(
        client.pk,
        amount=amount,
        currency=currency,
        request_id=f"fund-{client.pk}-{amount}-{next(_seq)}",
        by="system:test",
        method_token="card_4242",
    )
    assert deliver(psp, view.provider_id, "complete") in ("confirmed", "held")
    return Deposit.objects.get(pk=view.id)
