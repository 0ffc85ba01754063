"""Events the propfirm module emits (stream ``propfirm``).

Every challenge event carries ``challenge_id``, ``client_id``, ``phase`` (the phase's name),
``rule`` (the rule that decided, or "" for a purchase) and ``figures`` (integers: minor units,
basis points, millisecond times) — the agreed contract between modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from brokerdesk.core.events import DomainEvent


@dataclass(frozen=True)
class ChallengeEvent(DomainEvent):
    """Base of the challenge events."""

    stream: ClassVar[str] = "propfirm"

    challenge_id: str
    client_id: str
    phase: str
    rule: str = ""
    figures: dict[str, Any] = field(default_factory=dict)

    def aggregate_id(self) -> str:
        return self.challenge_id


@dataclass(frozen=True)
class ChallengePurchased(ChallengeEvent):
    """``challenge.purchased``: the client paid for a challenge (figures: price, currency…)."""

    type: ClassVar[str] = "challenge.purchased"


@dataclass(frozen=True)
class ChallengeStarted(ChallengeEvent):
    """``challenge.started``: a phase's platform account is open and funded (login, size)."""

    type: ClassVar[str] = "challenge.started"


@dataclass(frozen=True)
class ChallengePassed(ChallengeEvent):
    """``challenge.passed``: a phase was passed; the next phase (or funding) follows."""

    type: ClassVar[str] = "challenge.passed"


@dataclass(frozen=True)
class ChallengeFailed(ChallengeEvent):
    """``challenge.failed``: a rule was broken (or staff failed it); trading is disabled."""

    type: ClassVar[str] = "challenge.failed"


@dataclass(frozen=True)
class ChallengeFunded(ChallengeEvent):
    """``challenge.funded``: the client now trades a funded account."""

    type: ClassVar[str] = "challenge.funded"


@dataclass(frozen=True)
class PayoutPaid(ChallengeEvent):
    """``challenge.payout_paid``: a profit split (figures: profit, trader_share, firm_share)."""

    type: ClassVar[str] = "challenge.payout_paid"
