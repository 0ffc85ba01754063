"""NOWPayments (crypto gateway), in its own formats: invoices for deposits, mass payouts for
withdrawals, and IPN callbacks signed with ``x-nowpayments-sig``.

An IPN is a JSON POST. Its signature is the hex HMAC-SHA512, keyed with the IPN secret, of
the body re-serialised with its keys sorted (at every level) and no whitespace — what
JavaScript's ``JSON.stringify`` gives for the sorted object, so integral numbers lose their
".0". We recompute it and compare in constant time before reading anything else. One payment
sends an IPN per status; the inbox key is ``payment_id:status`` so each status counts once.

Deposits are priced in the wallet's currency (``price_amount``/``price_currency``): the
client pays in any coin and we credit the priced amount when the payment is ``finished``;
``failed`` and ``expired`` fail the deposit; ``partially_paid`` and the in-flight statuses
(waiting, confirming, confirmed, sending) are recorded and ignored — a partial payment waits
for the client to top it up or for staff. Payouts: ``FINISHED`` → payout.paid,
``FAILED``/``REJECTED`` → payout.failed. A payout batch created through the API still needs
the operator's two-factor verification in NOWPayments before it is sent (their rule).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from brokerdesk.core.errors import ValidationError
from brokerdesk.core.money import Money
from brokerdesk.payments.connectors.base import (
    EventKind,
    InvalidSignature,
    NormalizedEvent,
    ProviderError,
    ProviderPayment,
)
from brokerdesk.payments.connectors.http import Transport, urllib_transport

API_URL = "https://api.nowpayments.io/v1"
SIGNATURE_HEADER = "x-nowpayments-sig"


def _js_numbers(value: Any) -> Any:
    """Integral floats as ints, recursively (``JSON.stringify`` prints 100.0 as 100)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _js_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_js_numbers(v) for v in value]
    return value


def canonical(payload: Mapping[str, Any]) -> bytes:
    """The bytes NOWPayments signs: sorted keys, no spaces, JavaScript number forms."""
    return json.dumps(
        _js_numbers(payload), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


def ipn_signature(payload: Mapping[str, Any], secret: str) -> str:
    """The ``x-nowpayments-sig`` value of ``payload``."""
    return hmac.new(secret.encode(), canonical(payload), hashlib.sha512).hexdigest()


class NowPaymentsConnector:
    """NOWPayments invoices, mass payouts and signed IPNs."""

    provider = "nowpayments"

    def __init__(
        self,
        *,
        api_key: str,
        ipn_secret: str,
        ipn_url: str,
        success_url: str,
        cancel_url: str,
        payout_email: str = "",
        payout_password: str = "",
        api_url: str = API_URL,
        transport: Transport = urllib_transport,
    ) -> None:
        self._api_key = api_key
        self._ipn_secret = ipn_secret
        self.ipn_url = ipn_url
        self.success_url = success_url
        self.cancel_url = cancel_url
        self._payout_email = payout_email
        self._payout_password = payout_password
        self.api_url = api_url.rstrip("/")
        self._transport = transport

    def __repr__(self) -> str:  # never show the keys
        return "NowPaymentsConnector()"

    def _call(self, path: str, payload: Mapping[str, Any], token: str = "") -> dict[str, Any]:
        headers = {"x-api-key": self._api_key, "Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        status, body = self._transport(
            "POST", f"{self.api_url}{path}", headers, json.dumps(payload).encode()
        )
        try:
            answer: dict[str, Any] = json.loads(body or b"{}")
        except ValueError:
            answer = {}
        if status not in (200, 201):
            detail = str(answer.get("message") or answer.get("code") or status)
            raise ProviderError(f"NOWPayments refused the request: {detail}.", field="provider")
        return answer

    def create_deposit(
        self, *, reference: str, amount: int, currency: str, metadata: Mapping[str, str]
    ) -> ProviderPayment:
        """An invoice priced in the wallet currency; the client pays on ``pay_url``."""
        invoice = self._call(
            "/invoice",
            {
                "price_amount": float(Money(amount, currency).to_decimal()),
                "price_currency": currency.lower(),
                "order_id": reference,
                "order_description": "Wallet deposit",
                "ipn_callback_url": self.ipn_url,
                "success_url": self.success_url,
                "cancel_url": self.cancel_url,
            },
        )
        return ProviderPayment(
            self.provider,
            str(invoice.get("id", "")),
            "pending",
            str(invoice.get("invoice_url", "")),
        )

    def create_payout(
        self, *, reference: str, amount: int, currency: str, destination: str
    ) -> ProviderPayment:
        """A one-withdrawal payout batch to the address ``destination`` ("COIN:address")."""
        coin, _, address = destination.partition(":")
        if not address:
            raise ValidationError(
                "A crypto payout destination is written COIN:address.",
                code="bad_destination",
                field="destination",
            )
        token = str(
            self._call(
                "/auth", {"email": self._payout_email, "password": self._payout_password}
            ).get("token", "")
        )
        batch = self._call(
            "/payout",
            {
                "ipn_callback_url": self.ipn_url,
                "withdrawals": [
                    {
                        "address": address,
                        "currency": coin.lower(),
                        "fiat_amount": float(Money(amount, currency).to_decimal()),
                        "fiat_currency": currency.lower(),
                        "ipn_callback_url": self.ipn_url,
                        "unique_external_id": reference,
                    }
                ],
            },
            token=token,
        )
        withdrawals = batch.get("withdrawals") or [{}]
        return ProviderPayment(
            self.provider, str(withdrawals[0].get("id", batch.get("id", ""))), "pending"
        )

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> NormalizedEvent:
        """Verify ``x-nowpayments-sig`` over the sorted body, then normalise."""
        given = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER), "")
        try:
            payload = json.loads(body)
        except ValueError:
            raise InvalidSignature(
                "Webhook refused: the body is not JSON.", code="malformed_webhook", field="body"
            ) from None
        if (
            not isinstance(payload, dict)
            or not given
            or not hmac.compare_digest(given.lower(), ipn_signature(payload, self._ipn_secret))
        ):
            raise InvalidSignature(
                "Webhook refused: NOWPayments signature check failed.", field="signature"
            )
        exact = json.loads(body, parse_float=Decimal)
        return _payout(exact) if "unique_external_id" in exact else _payment(exact)


PAYMENT_KINDS: dict[str, EventKind] = {
    "finished": "deposit.succeeded",
    "failed": "deposit.failed",
    "expired": "deposit.failed",
}
PAYOUT_KINDS: dict[str, EventKind] = {
    "FINISHED": "payout.paid",
    "FAILED": "payout.failed",
    "REJECTED": "payout.failed",
}


def _payment(payload: Mapping[str, Any]) -> NormalizedEvent:
    status = str(payload.get("payment_status", ""))
    currency = str(payload.get("price_currency", "")).upper()
    return NormalizedEvent(
        provider="nowpayments",
        event_id=f"{payload.get('payment_id', '')}:{status}",
        kind=PAYMENT_KINDS.get(status, "ignored"),
        reference=str(payload.get("order_id", "")),
        provider_id=str(payload.get("payment_id", "")),
        amount=_minor(payload.get("price_amount"), currency, "price_amount"),
        currency=currency,
        status=status,
        raw=json.loads(json.dumps(payload, default=str)),
    )


def _payout(payload: Mapping[str, Any]) -> NormalizedEvent:
    status = str(payload.get("status", "")).upper()
    currency = str(payload.get("fiat_currency") or "").upper()
    amount = payload.get("fiat_amount")
    return NormalizedEvent(
        provider="nowpayments",
        event_id=f"payout:{payload.get('id', '')}:{status}",
        kind=PAYOUT_KINDS.get(status, "ignored"),
        reference=str(payload.get("unique_external_id", "")),
        provider_id=str(payload.get("id", "")),
        amount=_minor(amount, currency, "fiat_amount") if currency else 0,
        currency=currency,
        status=status,
        raw=json.loads(json.dumps(payload, default=str)),
    )


def _minor(value: Any, currency: str, field: str) -> int:
    """A decimal amount of ``currency`` in minor units, exactly (or a clear refusal)."""
    try:
        return Money.parse(Decimal(str(value)), currency, field=field).amount
    except (InvalidOperation, ValidationError):
        raise InvalidSignature(
            f"NOWPayments sent an amount we cannot read: {value!r} {currency}.",
            code="malformed_webhook",
            field=field,
        ) from None
