"""Events the bonuses module emits (stream ``bonuses``).

Payload (the agreed contract): ``bonus_id``, ``client_id``, ``currency``, ``amount`` (minor
units), ``reason``; plus ``kind``, ``campaign`` and ``figures`` (the numbers behind it).
The clients timeline projects them, so "why was my bonus removed" is on the client's timeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar
from uuid import UUID

from brokerdesk.core.events import DomainEvent


@dataclass(frozen=True)
class _BonusEvent(DomainEvent):
    stream: ClassVar[str] = "bonuses"

    bonus_id: UUID
    client_id: UUID
    currency: str
    amount: int
    reason: str
    kind: str = ""
    campaign: str = ""
    figures: dict[str, Any] = field(default_factory=dict)

    def aggregate_id(self) -> str:
        """The bonus: its events stay in order."""
        return str(self.bonus_id)


@dataclass(frozen=True)
class BonusGranted(_BonusEvent):
    """A bonus was granted (credits: into the client's bonus bucket)."""

    type: ClassVar[str] = "bonus.granted"


@dataclass(frozen=True)
class BonusUnlocked(_BonusEvent):
    """Bonus money became the client's cash (an unlock, a cashback or rebate payment)."""

    type: ClassVar[str] = "bonus.unlocked"


@dataclass(frozen=True)
class BonusForfeited(_BonusEvent):
    """Locked bonus money was removed (withdrawal, chargeback, expiry, closure, staff)."""

    type: ClassVar[str] = "bonus.forfeited"
