"""The sandbox PSP's connector (see ``payments.sandbox.server``)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from brokerdesk.payments.connectors.base import (
    EventKind,
    InvalidSignature,
    NormalizedEvent,
    ProviderError,
    ProviderPayment,
)
from brokerdesk.payments.sandbox import signing

_KINDS: dict[str, EventKind] = {
    "payment.succeeded": "deposit.succeeded",
    "payment.failed": "deposit.failed",
    "payment.chargeback": "deposit.chargeback",
    "payout.paid": "payout.paid",
    "payout.failed": "payout.failed",
    "payout.returned": "payout.returned",
}


class SandboxConnector:
    """Talks JSON to the sandbox PSP; verifies ``Sandbox-Signature`` webhooks."""

    provider = "sandbox"

    def __init__(
        self, *, base_url: str, api_key: str, webhook_secret: str, tolerance_s: int = 300
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._secret = webhook_secret
        self.tolerance_s = tolerance_s

    def __repr__(self) -> str:  # never show the secrets
        return f"SandboxConnector(base_url={self.base_url!r})"

    def _call(self, path: str, data: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 (configured http(s) URL)
            f"{self.base_url}{path}",
            data=json.dumps(data).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {self._api_key}",
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                result: dict[str, Any] = json.loads(response.read())
                return result
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:200]
            raise ProviderError(
                f"The sandbox PSP answered {exc.code}: {detail}", field="provider"
            ) from None
        except OSError as exc:
            raise ProviderError(
                f"The sandbox PSP is unreachable ({type(exc).__name__}).", field="provider"
            ) from None

    def create_deposit(
        self, *, reference: str, amount: int, currency: str, metadata: Mapping[str, str]
    ) -> ProviderPayment:
        """Create a payment; the client pays on its ``pay_url``."""
        data = self._call(
            "/v1/payments",
            {
                "amount": amount,
                "currency": currency,
                "reference": reference,
                "metadata": dict(metadata),
            },
        )
        return ProviderPayment(self.provider, data["id"], data["status"], data.get("pay_url", ""))

    def create_payout(
        self, *, reference: str, amount: int, currency: str, destination: str
    ) -> ProviderPayment:
        """Create a payout."""
        data = self._call(
            "/v1/payouts",
            {
                "amount": amount,
                "currency": currency,
                "reference": reference,
                "destination": destination,
            },
        )
        return ProviderPayment(self.provider, data["id"], data["status"])

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> NormalizedEvent:
        """Verify ``Sandbox-Signature`` over the raw body, then read the event."""
        header = _header(headers, signing.HEADER)
        try:
            signing.verify(body, header, self._secret, tolerance_s=self.tolerance_s)
        except signing.SignatureError as exc:
            raise InvalidSignature(f"Webhook refused: {exc}.", field="signature") from None
        try:
            event = json.loads(body)
            obj = event["data"]["object"]
            return NormalizedEvent(
                provider=self.provider,
                event_id=str(event["id"]),
                kind=_KINDS.get(str(event["type"]), "ignored"),
                reference=str(obj["reference"]),
                provider_id=str(obj["id"]),
                amount=int(obj["amount"]),
                currency=str(obj["currency"]),
                status=str(obj["status"]),
                fee=int(obj.get("fee", 0)),
                raw=event,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidSignature(
                f"Signed webhook is malformed ({type(exc).__name__}).",
                code="malformed_webhook",
                field="body",
            ) from None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None
