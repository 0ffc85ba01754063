"""Events payments emits (stream ``payments``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar
from uuid import UUID

from brokerdesk.core.events import DomainEvent


@dataclass(frozen=True)
class _PaymentEvent(DomainEvent):
    stream: ClassVar[str] = "payments"

    payment_id: UUID
    client_id: UUID
    reference: str
    amount: int
    currency: str
    actor: str

    def aggregate_id(self) -> str:
        """The client: events of one client stay in order."""
        return str(self.client_id)


@dataclass(frozen=True)
class DepositConfirmed(_PaymentEvent):
    """The PSP confirmed a deposit; the wallet was credited (pending or available)."""

    type: ClassVar[str] = "deposit.confirmed"
    available: bool = False
    provider: str = ""


@dataclass(frozen=True)
class DepositReversed(_PaymentEvent):
    """A confirmed deposit was reversed (chargeback or failed settlement)."""

    type: ClassVar[str] = "deposit.reversed"
    reason: str = ""


@dataclass(frozen=True)
class WithdrawalRequested(_PaymentEvent):
    """A client asked to withdraw; the amount moved to the locked bucket."""

    type: ClassVar[str] = "withdrawal.requested"


@dataclass(frozen=True)
class WithdrawalApproved(_PaymentEvent):
    """A withdrawal was approved (automatically or by a second person)."""

    type: ClassVar[str] = "withdrawal.approved"


@dataclass(frozen=True)
class WithdrawalPaid(_PaymentEvent):
    """The PSP paid the withdrawal out."""

    type: ClassVar[str] = "withdrawal.paid"
    provider_id: str = ""


@dataclass(frozen=True)
class WithdrawalReturned(_PaymentEvent):
    """A paid-out withdrawal came back; the funds are in the wallet again."""

    type: ClassVar[str] = "withdrawal.returned"
