"""The PSP port: what every payment service provider connector offers.

A connector creates deposit intents and payouts at its provider and turns the provider's
webhooks into ``NormalizedEvent``s after verifying their signature. Nothing else in payments
knows a provider's wire format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from brokerdesk.core.errors import DomainError

EventKind = Literal[
    "deposit.succeeded",
    "deposit.failed",
    "deposit.chargeback",
    "payout.paid",
    "payout.failed",
    "payout.returned",
    "ignored",
]


class InvalidSignature(DomainError):
    """A webhook's signature is missing, stale or wrong: it is refused unread."""

    code = "invalid_signature"
    http_status = 400


class ProviderError(DomainError):
    """The provider refused or failed a request."""

    code = "provider_error"
    http_status = 502


@dataclass(frozen=True)
class ProviderPayment:
    """A payment or payout as the provider created it."""

    provider: str
    provider_id: str
    status: str
    pay_url: str = ""


@dataclass(frozen=True)
class NormalizedEvent:
    """A verified provider event in our terms (amounts in minor units)."""

    provider: str
    event_id: str
    kind: EventKind
    reference: str  # our reference (deposit or withdrawal reference)
    provider_id: str  # the provider's payment or payout id
    amount: int
    currency: str
    status: str
    fee: int = 0
    raw: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class PSPConnector(Protocol):
    """What payments needs from a payment service provider."""

    provider: str

    def create_deposit(
        self, *, reference: str, amount: int, currency: str, metadata: Mapping[str, str]
    ) -> ProviderPayment:
        """Create a deposit intent (a payment the client completes on ``pay_url``)."""
        ...

    def create_payout(
        self, *, reference: str, amount: int, currency: str, destination: str
    ) -> ProviderPayment:
        """Instruct a payout to ``destination`` (a method token or account)."""
        ...

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> NormalizedEvent:
        """Verify the signature (raise ``InvalidSignature``) and normalise the event."""
        ...
