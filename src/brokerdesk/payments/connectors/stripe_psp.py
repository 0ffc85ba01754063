"""Stripe, through the official ``stripe`` package.

Deposits are Checkout Sessions (a hosted page: ``pay_url`` is the session's ``url``) whose
payment intent carries our reference in its metadata. Withdrawals return money to the source:
a refund of the deposit's payment intent (``destination``), with our reference in its metadata.
Webhooks are verified with ``stripe.Webhook.construct_event`` (``Stripe-Signature``,
five-minute tolerance) before anything is read.

Events understood: ``checkout.session.completed`` (paid) and ``payment_intent.succeeded`` →
deposit.succeeded; ``payment_intent.payment_failed`` and ``checkout.session.expired`` →
deposit.failed; ``charge.dispute.created`` → deposit.chargeback (matched by payment intent);
``refund.created``/``refund.updated`` (succeeded) → payout.paid, (failed/canceled) →
payout.failed. Anything else is recorded and ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import stripe

from brokerdesk.payments.connectors.base import (
    EventKind,
    InvalidSignature,
    NormalizedEvent,
    ProviderError,
    ProviderPayment,
)


class StripeConnector:
    """Stripe Checkout for deposits, refunds for return-to-source withdrawals."""

    provider = "stripe"
    pays_out_by_refund = True

    def __init__(
        self,
        *,
        api_key: str,
        webhook_secret: str,
        success_url: str,
        cancel_url: str,
        api_base: str | None = None,
        tolerance_s: int = 300,
    ) -> None:
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else {},
            max_network_retries=2,
        )
        self._secret = webhook_secret
        self.success_url = success_url
        self.cancel_url = cancel_url
        self.tolerance_s = tolerance_s

    def __repr__(self) -> str:  # never show the keys
        return "StripeConnector()"

    def create_deposit(
        self, *, reference: str, amount: int, currency: str, metadata: Mapping[str, str]
    ) -> ProviderPayment:
        """A Checkout Session for ``amount`` (minor units); idempotent on our reference."""
        try:
            session = self._client.v1.checkout.sessions.create(
                {
                    "mode": "payment",
                    "client_reference_id": reference,
                    "line_items": [
                        {
                            "quantity": 1,
                            "price_data": {
                                "currency": currency.lower(),
                                "unit_amount": amount,
                                "product_data": {"name": "Wallet deposit"},
                            },
                        }
                    ],
                    "payment_intent_data": {"metadata": {"reference": reference, **metadata}},
                    "metadata": {"reference": reference},
                    "success_url": self.success_url,
                    "cancel_url": self.cancel_url,
                },
                {"idempotency_key": f"deposit:{reference}"},
            )
        except stripe.StripeError as exc:
            raise ProviderError(
                f"Stripe refused the deposit: {_message(exc)}", field="provider"
            ) from None
        return ProviderPayment(self.provider, str(session.id), "pending", str(session.url or ""))

    def create_payout(
        self, *, reference: str, amount: int, currency: str, destination: str
    ) -> ProviderPayment:
        """Refund ``amount`` of the payment intent ``destination`` (return to source)."""
        try:
            refund = self._client.v1.refunds.create(
                {
                    "payment_intent": destination,
                    "amount": amount,
                    "metadata": {"reference": reference},
                },
                {"idempotency_key": f"withdrawal:{reference}"},
            )
        except stripe.StripeError as exc:
            raise ProviderError(
                f"Stripe refused the refund: {_message(exc)}", field="provider"
            ) from None
        return ProviderPayment(self.provider, str(refund.id), str(refund.status or "pending"))

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> NormalizedEvent:
        """Verify ``Stripe-Signature`` with ``stripe.Webhook.construct_event``, then normalise."""
        header = next((v for k, v in headers.items() if k.lower() == "stripe-signature"), None)
        try:
            event = stripe.Webhook.construct_event(body, header, self._secret, self.tolerance_s)
        except stripe.SignatureVerificationError:
            raise InvalidSignature(
                "Webhook refused: Stripe signature check failed.", field="signature"
            ) from None
        except ValueError:
            raise InvalidSignature(
                "Signed webhook is not valid JSON.", code="malformed_webhook", field="body"
            ) from None
        data: dict[str, Any] = json.loads(body)
        return _normalise(str(event.id), str(event.type), data["data"]["object"], data)


def _normalise(
    event_id: str, event_type: str, obj: dict[str, Any], raw: dict[str, Any]
) -> NormalizedEvent:
    kind: EventKind = "ignored"
    reference = str((obj.get("metadata") or {}).get("reference", ""))
    provider_id = str(obj.get("id", ""))
    amount = int(obj.get("amount") or 0)
    status = str(obj.get("status", ""))
    if event_type == "checkout.session.completed":
        reference = str(obj.get("client_reference_id") or reference)
        provider_id = str(obj.get("payment_intent") or provider_id)
        amount = int(obj.get("amount_total") or 0)
        status = str(obj.get("payment_status", ""))
        kind = "deposit.succeeded" if status == "paid" else "ignored"
    elif event_type == "checkout.session.expired":
        reference = str(obj.get("client_reference_id") or reference)
        amount = int(obj.get("amount_total") or 0)
        kind = "deposit.failed"
    elif event_type == "payment_intent.succeeded":
        amount = int(obj.get("amount_received") or amount)
        kind = "deposit.succeeded"
    elif event_type == "payment_intent.payment_failed":
        kind = "deposit.failed"
    elif event_type == "charge.dispute.created":
        reference = ""  # disputes carry the payment intent, not our metadata
        provider_id = str(obj.get("payment_intent", ""))
        kind = "deposit.chargeback"
    elif event_type in ("refund.created", "refund.updated"):
        if status == "succeeded":
            kind = "payout.paid"
        elif status in ("failed", "canceled"):
            kind = "payout.failed"
    return NormalizedEvent(
        provider="stripe",
        event_id=event_id,
        kind=kind,
        reference=reference,
        provider_id=provider_id,
        amount=amount,
        currency=str(obj.get("currency", "")).upper(),
        status=status,
        raw=raw,
    )


def _message(exc: stripe.StripeError) -> str:
    return str(getattr(exc, "user_message", None) or type(exc).__name__)
