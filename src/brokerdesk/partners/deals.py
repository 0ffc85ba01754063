"""A typed, tolerant parser of the ``trading.deal_closed`` payload.

The accrual engine depends on this class only, never on the trading module's code. Names follow
``brokerdesk.trading.events.DealClosed`` (``deal``, ``storage``, ``time_msc``) and accept the
alternatives other producers use (``ticket``, ``swap``, ``time`` as ISO 8601, ``group`` or
``account_group``, ``position_opened_at``/``open_time_msc``). Missing optional fields become
``None`` or 0; a missing required field raises ``ValidationError`` naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from uuid import UUID

from brokerdesk.core.errors import ValidationError

DEAL_CLOSED = "trading.deal_closed"


@dataclass(frozen=True)
class ClosedDeal:
    """One closing deal, as the commission engine needs it (money in minor units)."""

    server: str
    login: int
    deal: int
    closed_at: datetime
    symbol: str
    volume: int  # MT5 units: 1/10,000 lot
    profit: int = 0
    commission: int = 0
    swap: int = 0
    fee: int = 0
    currency: str = ""
    group: str = ""
    client_id: UUID | None = None
    position_id: int = 0
    entry: int | None = None
    opened_at: datetime | None = None
    spread_revenue: int | None = None  # broker's spread income on the deal, when known
    bonus_cost: int = 0  # bonus cost attributable to the deal, when known

    @cached_property
    def key(self) -> str:
        """The deal's identity across redeliveries: ``server:deal`` (made once per object)."""
        return f"{self.server}:{self.deal}"

    @property
    def holding_seconds(self) -> float | None:
        """How long the position was open, when its opening time is known."""
        if self.opened_at is None:
            return None
        return (self.closed_at - self.opened_at).total_seconds()


def _first(payload: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in payload and payload[name] is not None and payload[name] != "":
            return payload[name]
    return None


def _int(payload: dict[str, Any], *names: str, required: bool = False) -> int | None:
    value = _first(payload, *names)
    if value is None:
        if required:
            raise ValidationError(f"The deal has no {names[0]}.", code="missing", field=names[0])
        return None
    if isinstance(value, bool):
        raise ValidationError(f"{names[0]} must be an integer.", code="not_integer", field=names[0])
    if isinstance(value, float):
        if not value.is_integer():
            raise ValidationError(
                f"{names[0]} must be a whole number of minor units.",
                code="not_integer",
                field=names[0],
            )
        return int(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValidationError(
            f"{names[0]} must be an integer.", code="not_integer", field=names[0]
        ) from None


def _time(
    payload: dict[str, Any], iso_names: tuple[str, ...], msc_names: tuple[str, ...]
) -> datetime | None:
    value = _first(payload, *iso_names)
    if value is not None:
        try:
            when = datetime.fromisoformat(str(value))
        except ValueError:
            raise ValidationError(
                f"{iso_names[0]} is not an ISO 8601 time.", code="bad_time", field=iso_names[0]
            ) from None
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    msc = _int(payload, *msc_names)
    if msc is None or msc <= 0:
        return None
    return datetime.fromtimestamp(msc / 1000, tz=UTC)


def parse_deal_closed(payload: dict[str, Any]) -> ClosedDeal:
    """Parse one ``trading.deal_closed`` payload; raise ``ValidationError`` when unusable."""
    server = _first(payload, "server")
    if not server:
        raise ValidationError("The deal has no server.", code="missing", field="server")
    closed_at = _time(payload, ("time", "closed_at"), ("time_msc",))
    if closed_at is None:
        raise ValidationError("The deal has no time.", code="missing", field="time")
    raw_client = _first(payload, "client_id")
    try:
        client_id = UUID(str(raw_client)) if raw_client is not None else None
    except ValueError:
        raise ValidationError(
            "client_id is not a UUID.", code="bad_uuid", field="client_id"
        ) from None
    volume = _int(payload, "volume_closed", "volume", required=True) or 0
    if volume < 0:
        raise ValidationError("volume must not be negative.", code="negative", field="volume")
    return ClosedDeal(
        server=str(server),
        login=_int(payload, "login", required=True) or 0,
        deal=_int(payload, "deal", "ticket", "deal_ticket", required=True) or 0,
        closed_at=closed_at,
        symbol=str(_first(payload, "symbol") or ""),
        volume=volume,
        profit=_int(payload, "profit") or 0,
        commission=_int(payload, "commission") or 0,
        swap=_int(payload, "swap", "storage") or 0,
        fee=_int(payload, "fee") or 0,
        currency=str(_first(payload, "currency") or "").upper(),
        group=str(_first(payload, "group", "account_group") or ""),
        client_id=client_id,
        position_id=_int(payload, "position_id", "position") or 0,
        entry=_int(payload, "entry"),
        opened_at=_time(
            payload,
            ("position_opened_at", "opened_at", "open_time"),
            ("position_time_msc", "open_time_msc"),
        ),
        spread_revenue=_int(payload, "spread_revenue"),
        bonus_cost=_int(payload, "bonus_cost") or 0,
    )


def deal_payload(deal: ClosedDeal) -> dict[str, Any]:
    """The deal as JSON (the evidence copy kept with ``DealRecord``)."""
    return {
        "server": deal.server,
        "login": deal.login,
        "deal": deal.deal,
        "time": deal.closed_at.isoformat(),
        "symbol": deal.symbol,
        "volume": deal.volume,
        "profit": deal.profit,
        "commission": deal.commission,
        "swap": deal.swap,
        "fee": deal.fee,
        "currency": deal.currency,
        "group": deal.group,
        "client_id": str(deal.client_id) if deal.client_id else None,
        "position_id": deal.position_id,
        "entry": deal.entry,
        "position_opened_at": deal.opened_at.isoformat() if deal.opened_at else None,
        "spread_revenue": deal.spread_revenue,
        "bonus_cost": deal.bonus_cost,
    }


def deal_extras(deal: ClosedDeal) -> dict[str, Any]:
    """The deal's fields that ``DealRecord`` has no column for, when they are set (what the
    commission may depend on beyond the columns: fee, spread revenue, bonus cost)."""
    extras: dict[str, Any] = {}
    if deal.fee:
        extras["fee"] = deal.fee
    if deal.entry is not None:
        extras["entry"] = deal.entry
    if deal.spread_revenue is not None:
        extras["spread_revenue"] = deal.spread_revenue
    if deal.bonus_cost:
        extras["bonus_cost"] = deal.bonus_cost
    return extras


def closed_deal_of(record: Any) -> ClosedDeal:
    """The ``ClosedDeal`` a ``DealRecord`` was made from (columns, plus its extras)."""
    extras: dict[str, Any] = record.payload or {}
    return ClosedDeal(
        server=record.server,
        login=record.login,
        deal=record.deal,
        closed_at=record.closed_at,
        symbol=record.symbol,
        volume=record.volume,
        profit=record.profit,
        commission=record.commission,
        swap=record.swap,
        fee=int(extras.get("fee") or 0),
        currency=record.currency,
        group=record.group,
        client_id=record.client_id,
        position_id=record.position_id,
        entry=extras.get("entry"),
        opened_at=record.opened_at,
        spread_revenue=extras.get("spread_revenue"),
        bonus_cost=int(extras.get("bonus_cost") or 0),
    )
