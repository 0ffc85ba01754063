"""The Stripe connector (official ``stripe`` package) against a local stand-in for Stripe's API,
with webhooks signed the way Stripe signs them."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from brokerdesk.payments import connectors, queries, services
from brokerdesk.payments.connectors.base import InvalidSignature
from brokerdesk.payments.connectors.stripe_psp import StripeConnector
from brokerdesk.payments.models import Deposit
from brokerdesk.payments.sandbox import signing
from tests.payments.conftest import new_client, wallet

WHSEC = "whsec_stripe_test_secret"


class FakeStripe:
    """Answers POST /v1/checkout/sessions and /v1/refunds like Stripe, recording the forms."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, list[str]], str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"])).decode()
                form = urllib.parse.parse_qs(raw)
                outer.requests.append((self.path, form, self.headers.get("Idempotency-Key", "")))
                if self.path == "/v1/checkout/sessions":
                    n = len(outer.requests)
                    body = {
                        "id": f"cs_test_{n}",
                        "object": "checkout.session",
                        "url": f"https://checkout.stripe.com/c/pay/cs_test_{n}",
                    }
                else:
                    body = {"id": "re_test_1", "object": "refund", "status": "pending"}
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    fake = FakeStripe()
    thread = threading.Thread(
        target=fake.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    connectors.register(
        StripeConnector(
            api_key="sk_test_123",
            webhook_secret=WHSEC,
            success_url="https://broker.example/ok",
            cancel_url="https://broker.example/cancel",
            api_base=fake.url,
        )
    )
    try:
        yield fake
    finally:
        connectors.unregister("stripe")
        fake.server.shutdown()
        fake.server.server_close()
        thread.join(timeout=5)


def stripe_event(
    event_type: str, obj: dict[str, Any], event_id: str
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {"id": event_id, "object": "event", "type": event_type, "data": {"object": obj}}
    ).encode()
    return body, {"Stripe-Signature": signing.sign(body, WHSEC)}  # Stripe's t=…,v1=… scheme


def paid_session(
    deposit: Any, amount: int, event_id: str = "evt_1"
) -> tuple[bytes, dict[str, str]]:
    return stripe_event(
        "checkout.session.completed",
        {
            "id": deposit.provider_id,
            "object": "checkout.session",
            "client_reference_id": deposit.reference,
            "payment_intent": "pi_test_1",
            "amount_total": amount,
            "currency": "usd",
            "payment_status": "paid",
        },
        event_id,
    )


@pytest.mark.django_db
def test_a_stripe_checkout_deposit_is_credited_once_and_a_dispute_reverses_it(fake_stripe):
    alice = new_client(verified=True)

    deposit = services.create_deposit_intent(
        alice.pk,
        amount=100_000,
        currency="USD",
        request_id="s-1",
        by="system:test",
        provider="stripe",
        method_token="stripe_card",
    )

    path, form, key = fake_stripe.requests[0]
    assert path == "/v1/checkout/sessions" and key == f"deposit:{deposit.reference}"
    assert form["line_items[0][price_data][unit_amount]"] == ["100000"]
    assert form["client_reference_id"] == [deposit.reference]
    assert deposit.pay_url.startswith("https://checkout.stripe.com/")

    body, headers = paid_session(deposit, 100_000)
    assert services.receive_webhook("stripe", body, headers) == "confirmed"
    assert services.receive_webhook("stripe", body, headers) == "duplicate"
    assert wallet(alice.pk) == 100_000
    assert Deposit.objects.get(pk=deposit.id).provider_id == "pi_test_1"

    body, headers = stripe_event(
        "charge.dispute.created",
        {
            "id": "dp_1",
            "object": "dispute",
            "payment_intent": "pi_test_1",
            "amount": 100_000,
            "currency": "usd",
            "status": "needs_response",
        },
        "evt_2",
    )
    assert services.receive_webhook("stripe", body, headers) == "reversed"
    assert wallet(alice.pk) == 0


@pytest.mark.django_db
def test_a_stripe_withdrawal_refunds_the_deposit_it_returns_to(fake_stripe):
    alice = new_client(verified=True)
    deposit = services.create_deposit_intent(
        alice.pk,
        amount=100_000,
        currency="USD",
        request_id="s-2",
        by="system:test",
        provider="stripe",
        method_token="stripe_card",
    )
    services.receive_webhook("stripe", *paid_session(deposit, 100_000))
    method_id = Deposit.objects.get(pk=deposit.id).method_id

    sent = services.send_payout(
        services.request_withdrawal(
            alice.pk,
            amount=25_000,
            currency="USD",
            method_id=method_id,
            request_id="sw-1",
            by="system:test",
        ).id
    )

    path, form, key = fake_stripe.requests[-1]
    assert path == "/v1/refunds" and form["payment_intent"] == ["pi_test_1"]
    assert form["amount"] == ["25000"] and key == f"withdrawal:{sent.reference}"
    body, headers = stripe_event(
        "refund.updated",
        {
            "id": "re_test_1",
            "object": "refund",
            "amount": 25_000,
            "currency": "usd",
            "status": "succeeded",
            "metadata": {"reference": sent.reference},
        },
        "evt_3",
    )
    assert services.receive_webhook("stripe", body, headers) == "paid"
    assert queries.get_withdrawal(sent.id).status == "paid"
    assert (wallet(alice.pk), wallet(alice.pk, bucket="locked")) == (75_000, 0)


def test_a_stripe_webhook_with_a_bad_or_stale_signature_is_refused():
    connector = StripeConnector(
        api_key="sk_test_x", webhook_secret=WHSEC, success_url="https://x", cancel_url="https://x"
    )
    body = json.dumps(
        {"id": "evt", "object": "event", "type": "x", "data": {"object": {}}}
    ).encode()

    for header in (
        signing.sign(body, "whsec_other"),
        signing.sign(body, WHSEC, timestamp=int(time.time()) - 600),
        "",
    ):
        with pytest.raises(InvalidSignature):
            connector.parse_webhook(body, {"Stripe-Signature": header})
    assert WHSEC not in repr(connector)
