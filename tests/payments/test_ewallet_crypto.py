"""The e-wallet (Skrill) and crypto-gateway (NOWPayments) connectors: their own notification
formats and signature schemes, end to end through the webhook inbox and the ledger, with the
providers' APIs replaced by fakes at the transport (every request is still built and every
answer parsed by the connectors' real code)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from django.test import Client

from brokerdesk.payments import connectors, services
from brokerdesk.payments.connectors.base import InvalidSignature
from brokerdesk.payments.connectors.nowpayments import NowPaymentsConnector, canonical
from brokerdesk.payments.connectors.skrill import SkrillConnector
from brokerdesk.payments.models import Deposit, PaymentMethod
from tests.payments.conftest import new_client, wallet

SECRET_WORD = "harbour7"
IPN_SECRET = "ipn-secret-for-tests"
MERCHANT = {"merchant_email": "payments@broker.example", "merchant_id": "100005"}


class FakeTransport:
    """Records each request and answers from a queue of (status, body)."""

    def __init__(self, *answers: tuple[int, bytes]) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []

    def __call__(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> tuple[int, bytes]:
        self.requests.append((method, url, dict(headers), body or b""))
        return self.answers.pop(0)


def skrill(transport: FakeTransport) -> SkrillConnector:
    return SkrillConnector(
        **MERCHANT,
        secret_word=SECRET_WORD,
        api_password="api-pass",
        status_url="https://broker.example/api/v1/payments/webhooks/skrill",
        return_url="https://broker.example/portal/",
        transport=transport,
    )


def skrill_notification(reference: str, amount: str, status: str, **extra: str) -> bytes:
    """A status_url POST signed as Skrill signs it (the documented md5sig formula)."""
    fields = {
        "pay_to_email": MERCHANT["merchant_email"],
        "pay_from_email": "client@wallet.example",
        "merchant_id": MERCHANT["merchant_id"],
        "transaction_id": reference,
        "mb_transaction_id": extra.pop("mb_transaction_id", "170032056"),
        "mb_amount": amount,
        "mb_currency": "USD",
        "status": status,
        "amount": amount,
        "currency": "USD",
    }
    secret = hashlib.md5(SECRET_WORD.encode()).hexdigest().upper()  # noqa: S324
    text = (
        fields["merchant_id"]
        + fields["transaction_id"]
        + secret
        + fields["mb_amount"]
        + fields["mb_currency"]
        + fields["status"]
    )
    fields["md5sig"] = hashlib.md5(text.encode()).hexdigest().upper()  # noqa: S324
    fields.update(extra)
    return urlencode(fields).encode()


@pytest.fixture
def skrill_transport() -> Iterator[FakeTransport]:
    transport = FakeTransport()
    connectors.register(skrill(transport))
    yield transport
    connectors.unregister("skrill")


def skrill_deposit(transport: FakeTransport, client: Any, amount: int) -> Any:
    transport.answers.append((200, b"5e281d1376d92ba789ca7f0583e045d4"))
    return services.create_deposit_intent(
        client.pk,
        amount=amount,
        currency="USD",
        request_id=f"skrill-{client.pk}-{amount}",
        by=f"client:{client.pk}",
        provider="skrill",
        method_token="client@wallet.example",
        method_kind="ewallet",
    )


# ------------------------------------------------------------------------------ Skrill


@pytest.mark.django_db
def test_a_skrill_deposit_is_prepared_as_a_quick_checkout_session(skrill_transport):
    client = new_client(verified=True)
    intent = skrill_deposit(skrill_transport, client, 2_546)

    method, url, _, body = skrill_transport.requests[0]
    form = dict(parse_qsl(body.decode()))
    assert (method, url) == ("POST", "https://pay.skrill.com")
    assert form["transaction_id"] == intent.reference
    assert (form["amount"], form["currency"], form["prepare_only"]) == ("25.46", "USD", "1")
    assert intent.pay_url == "https://pay.skrill.com/?sid=5e281d1376d92ba789ca7f0583e045d4"


@pytest.mark.django_db
def test_a_signed_skrill_notification_credits_the_wallet_once(skrill_transport):
    client = new_client(verified=True)
    intent = skrill_deposit(skrill_transport, client, 2_540)
    body = skrill_notification(intent.reference, "25.4", "2")
    http = Client()

    first = http.post(
        "/api/v1/payments/webhooks/skrill", body, content_type="application/x-www-form-urlencoded"
    )
    again = http.post(
        "/api/v1/payments/webhooks/skrill", body, content_type="application/x-www-form-urlencoded"
    )

    assert first.status_code == 200 and again.status_code == 200
    assert Deposit.objects.get(pk=intent.id).status == "confirmed"
    assert wallet(client.pk) == 2_540


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("tamper", "field"),
    [
        (lambda b: b.replace(b"mb_amount=25.4", b"mb_amount=2540"), "md5sig"),
        (lambda b: b.replace(b"merchant_id=100005", b"merchant_id=999999"), "md5sig"),
        (lambda b: b + b"&sha2sig=DEADBEEF", "sha2sig"),
        (lambda b: b.replace(b"md5sig=", b"md5sigx="), "md5sig"),
    ],
)
def test_a_tampered_skrill_notification_is_refused_and_posts_nothing(
    skrill_transport, tamper, field
):
    client = new_client(verified=True)
    intent = skrill_deposit(skrill_transport, client, 2_540)

    with pytest.raises(InvalidSignature) as refused:
        services.receive_webhook(
            "skrill", tamper(skrill_notification(intent.reference, "25.4", "2")), {}
        )

    assert refused.value.field == field
    assert wallet(client.pk) == 0 and Deposit.objects.get(pk=intent.id).status != "confirmed"


def test_a_notification_for_another_merchant_account_is_refused():
    connector = skrill(FakeTransport())
    body = skrill_notification("dep_x", "10", "2", pay_to_email="someone@else.example")
    with pytest.raises(InvalidSignature) as refused:
        connector.parse_webhook(body, {})
    assert refused.value.code == "wrong_merchant"


def test_skrill_status_codes_map_to_our_events():
    connector = skrill(FakeTransport())
    kinds = {
        status: connector.parse_webhook(skrill_notification("dep_1", "10", status), {}).kind
        for status in ("2", "0", "-1", "-2", "-3")
    }
    assert kinds == {
        "2": "deposit.succeeded",
        "0": "ignored",
        "-1": "deposit.failed",
        "-2": "deposit.failed",
        "-3": "deposit.chargeback",
    }
    payout = connector.parse_webhook(skrill_notification("wd_1", "10", "-4"), {})
    assert payout.kind == "payout.returned"


@pytest.mark.django_db
def test_a_skrill_chargeback_reverses_the_deposit(skrill_transport):
    client = new_client(verified=True)
    intent = skrill_deposit(skrill_transport, client, 5_000)
    services.receive_webhook("skrill", skrill_notification(intent.reference, "50", "2"), {})
    assert wallet(client.pk) == 5_000

    services.receive_webhook("skrill", skrill_notification(intent.reference, "50", "-3"), {})

    assert wallet(client.pk) == 0
    assert Deposit.objects.get(pk=intent.id).status == "reversed"


@pytest.mark.django_db
def test_a_skrill_withdrawal_is_paid_through_the_automated_payments_interface(skrill_transport):
    client = new_client(verified=True)
    intent = skrill_deposit(skrill_transport, client, 10_000)
    services.receive_webhook("skrill", skrill_notification(intent.reference, "100", "2"), {})
    method = PaymentMethod.objects.get(client_id=client.pk, token="client@wallet.example")
    requested = services.request_withdrawal(
        client.pk,
        amount=4_000,
        currency="USD",
        method_id=method.pk,
        request_id=f"skrill-wd-{client.pk}",
        by=f"client:{client.pk}",
    )
    skrill_transport.answers += [
        (200, b"<?xml version='1.0'?><response><sid>7783bfa23641a627</sid></response>"),
        (
            200,
            b"<response><transaction><amount>40.00</amount><currency>USD</currency>"
            b"<id>497029</id><status>1</status></transaction></response>",
        ),
    ]

    sent = services.send_payout(requested.id)

    prepare = dict(parse_qsl(skrill_transport.requests[1][3].decode()))
    assert prepare["action"] == "prepare" and prepare["bnf_email"] == "client@wallet.example"
    assert prepare["amount"] == "40.00" and prepare["frn_trn_id"] == requested.reference
    assert prepare["password"] == hashlib.md5(b"api-pass").hexdigest()  # noqa: S324
    assert dict(parse_qsl(skrill_transport.requests[2][3].decode())) == {
        "action": "transfer",
        "sid": "7783bfa23641a627",
    }
    assert sent.status == "sent" and sent.provider_id == "497029"

    outcome = services.receive_webhook(
        "skrill",
        skrill_notification(requested.reference, "40", "2", mb_transaction_id="497029"),
        {},
    )
    assert outcome == "paid"
    assert (wallet(client.pk), wallet(client.pk, bucket="locked")) == (6_000, 0)


# -------------------------------------------------------------------------- NOWPayments


def nowpayments(transport: FakeTransport) -> NowPaymentsConnector:
    return NowPaymentsConnector(
        api_key="np-key",
        ipn_secret=IPN_SECRET,
        ipn_url="https://broker.example/api/v1/payments/webhooks/nowpayments",
        success_url="https://broker.example/portal/",
        cancel_url="https://broker.example/portal/",
        payout_email="ops@broker.example",
        payout_password="np-pass",
        transport=transport,
    )


def ipn(payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """An IPN as NOWPayments sends it: unsorted JSON, signed over the sorted form."""
    body = json.dumps(payload).encode()  # keys in insertion order, with spaces
    signature = hmac.new(IPN_SECRET.encode(), canonical(payload), hashlib.sha512).hexdigest()
    return body, {"x-nowpayments-sig": signature}


def payment_ipn(reference: str, status: str, price: float | int = 100) -> dict[str, Any]:
    return {
        "payment_status": status,
        "payment_id": 5077125051,
        "pay_address": "0xd1cDE08A07cD25adEbEd35c3867a59228C09B606",
        "price_amount": price,
        "price_currency": "usd",
        "pay_amount": 0.0413,
        "actually_paid": 0.0413 if status == "finished" else 0,
        "pay_currency": "eth",
        "order_id": reference,
        "order_description": "Wallet deposit",
        "purchase_id": "5837122679",
        "outcome_amount": 0.0405,
        "outcome_currency": "eth",
        "fee": {"currency": "eth", "depositFee": 0, "withdrawalFee": 0, "serviceFee": 0},
    }


@pytest.fixture
def np_transport() -> Iterator[FakeTransport]:
    transport = FakeTransport()
    connectors.register(nowpayments(transport))
    yield transport
    connectors.unregister("nowpayments")


def np_deposit(transport: FakeTransport, client: Any, amount: int) -> Any:
    transport.answers.append(
        (
            200,
            b'{"id": "4522625843", "invoice_url": "https://nowpayments.io/payment/?iid=4522625843"}',
        )
    )
    return services.create_deposit_intent(
        client.pk,
        amount=amount,
        currency="USD",
        request_id=f"np-{client.pk}-{amount}",
        by=f"client:{client.pk}",
        provider="nowpayments",
        method_token="ETH:0xd1cDE08A07cD25adEbEd35c3867a59228C09B606",
        method_kind="crypto",
    )


def test_the_signature_covers_the_sorted_body_with_javascript_numbers():
    payload = {"b": 100.0, "a": {"z": 1, "y": 0.5}, "c": "ü"}
    assert canonical(payload) == '{"a":{"y":0.5,"z":1},"b":100,"c":"ü"}'.encode()


@pytest.mark.django_db
def test_a_finished_crypto_payment_credits_the_priced_amount_once(np_transport):
    client = new_client(verified=True)
    intent = np_deposit(np_transport, client, 10_000)
    sent = json.loads(np_transport.requests[0][3])
    assert np_transport.requests[0][2]["x-api-key"] == "np-key"
    assert (sent["price_amount"], sent["price_currency"], sent["order_id"]) == (
        100.0,
        "usd",
        intent.reference,
    )
    assert intent.pay_url.endswith("iid=4522625843")

    outcomes = [
        services.receive_webhook("nowpayments", *ipn(payment_ipn(intent.reference, status)))
        for status in ("waiting", "confirming", "partially_paid", "finished", "finished")
    ]

    assert outcomes[:3] == ["ignored"] * 3 and outcomes[3] == "confirmed"
    assert outcomes[4] == "duplicate"
    assert wallet(client.pk) == 10_000


@pytest.mark.django_db
def test_an_expired_crypto_invoice_fails_the_deposit(np_transport):
    client = new_client(verified=True)
    intent = np_deposit(np_transport, client, 10_000)
    services.receive_webhook("nowpayments", *ipn(payment_ipn(intent.reference, "expired")))
    assert Deposit.objects.get(pk=intent.id).status == "failed"
    assert wallet(client.pk) == 0


@pytest.mark.django_db
def test_a_forged_or_altered_ipn_is_refused(np_transport):
    client = new_client(verified=True)
    intent = np_deposit(np_transport, client, 10_000)
    body, headers = ipn(payment_ipn(intent.reference, "finished"))

    altered = body.replace(b'"price_amount": 100', b'"price_amount": 1000')
    for forged_body, forged_headers in (
        (altered, headers),
        (body, {"x-nowpayments-sig": "0" * 128}),
        (body, {}),
        (b"not json", headers),
    ):
        with pytest.raises(InvalidSignature):
            services.receive_webhook("nowpayments", forged_body, forged_headers)
    assert wallet(client.pk) == 0


@pytest.mark.django_db
def test_a_crypto_withdrawal_is_a_payout_batch_paid_by_its_ipn(np_transport):
    client = new_client(verified=True)
    intent = np_deposit(np_transport, client, 10_000)
    services.receive_webhook("nowpayments", *ipn(payment_ipn(intent.reference, "finished")))
    method = PaymentMethod.objects.get(client_id=client.pk, kind="crypto")
    requested = services.request_withdrawal(
        client.pk,
        amount=2_500,
        currency="USD",
        method_id=method.pk,
        request_id=f"np-wd-{client.pk}",
        by=f"client:{client.pk}",
    )
    np_transport.answers += [
        (200, b'{"token": "jwt-token"}'),
        (200, b'{"id": "5000000713", "withdrawals": [{"id": "5000000000", "status": "WAITING"}]}'),
    ]

    sent = services.send_payout(requested.id)

    auth, payout = np_transport.requests[1], np_transport.requests[2]
    assert auth[1].endswith("/v1/auth")
    assert payout[2]["Authorization"] == "Bearer jwt-token"
    batch = json.loads(payout[3])["withdrawals"][0]
    assert batch["address"] == "0xd1cDE08A07cD25adEbEd35c3867a59228C09B606"
    assert (batch["currency"], batch["fiat_amount"], batch["fiat_currency"]) == ("eth", 25.0, "usd")
    assert batch["unique_external_id"] == requested.reference
    assert sent.provider_id == "5000000000"

    paid = {
        "id": "5000000000",
        "address": batch["address"],
        "currency": "eth",
        "amount": "0.0103",
        "fiat_amount": 25,
        "fiat_currency": "usd",
        "batch_withdrawal_id": "5000000713",
        "status": "FINISHED",
        "hash": "0x1c2",
        "unique_external_id": requested.reference,
    }
    assert services.receive_webhook("nowpayments", *ipn(paid)) == "paid"
    assert (wallet(client.pk), wallet(client.pk, bucket="locked")) == (7_500, 0)


def test_a_crypto_payout_destination_must_name_the_coin():
    connector = nowpayments(FakeTransport())
    with pytest.raises(Exception) as refused:
        connector.create_payout(reference="wd_1", amount=100, currency="USD", destination="0xabc")
    assert getattr(refused.value, "field", "") == "destination"
