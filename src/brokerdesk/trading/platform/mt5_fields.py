"""Conversions from MT5-shaped objects (``MTDeal``, ``MTPosition``, ``MTUser``, ``MTAccount``)
to the port's types. Works on ``MT5Manager`` objects (attributes) and on the simulator's wire
dicts (keys) alike: both use MT5's field names and units. This is the edge where floats end.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from brokerdesk.trading.platform.port import (
    AccountState,
    Deal,
    DealAction,
    DealEntry,
    PlatformUser,
    Position,
    PositionAction,
    to_minor,
    to_points,
)

Getter = Callable[[str, Any], Any]

# Enum members by value: the enum call costs more than the rest of a field (hot path).
_DEAL_ACTIONS: dict[int, DealAction] = {int(m): m for m in DealAction}
_DEAL_ENTRIES: dict[int, DealEntry] = {int(m): m for m in DealEntry}
_POSITION_ACTIONS: dict[int, PositionAction] = {int(m): m for m in PositionAction}


_SCALE = tuple(10**d for d in range(19))


def _money(value: Any, digits: int) -> int:
    """:func:`to_minor` with a pumped record's common cases first (zero; a float far from a
    half after scaling, which rounds the same in binary); the rest goes to ``to_minor``."""
    if type(value) is float:
        if value == 0.0:
            return 0
        if 0 <= digits < 19:
            scaled = value * _SCALE[digits]
            nearest = round(scaled)
            if -1e14 < scaled < 1e14 and -0.45 < scaled - nearest < 0.45:
                return nearest
    return to_minor(value, digits)


def getter(obj: Any) -> Getter:
    """``get(name, default)`` over a mapping or an object with attributes."""
    if isinstance(obj, Mapping):
        return obj.get
    return lambda name, default: getattr(obj, name, default)


def deal_from_mt5(obj: Any) -> Deal:
    """An ``MTDeal`` as a :class:`Deal` (money to minor units of ``DigitsCurrency``)."""
    if type(obj) is dict:
        return _deal_from_dict(obj)
    g = getter(obj)
    cd = int(g("DigitsCurrency", 2))
    digits = int(g("Digits", 0))
    time_msc = int(g("TimeMsc", 0)) or int(g("Time", 0)) * 1000
    action, entry = int(g("Action", 0)), int(g("Entry", 0))
    return Deal(
        deal=int(g("Deal", 0)),
        login=int(g("Login", 0)),
        action=_DEAL_ACTIONS[action] if action in _DEAL_ACTIONS else DealAction(action),
        entry=_DEAL_ENTRIES[entry] if entry in _DEAL_ENTRIES else DealEntry(entry),
        time_msc=time_msc,
        currency_digits=cd,
        profit=to_minor(g("Profit", 0.0), cd),
        commission=to_minor(g("Commission", 0.0), cd),
        storage=to_minor(g("Storage", 0.0), cd),
        fee=to_minor(g("Fee", 0.0), cd),
        order=int(g("Order", 0)),
        position_id=int(g("PositionID", 0)),
        reason=int(g("Reason", 0)),
        symbol=str(g("Symbol", "") or ""),
        volume=int(g("Volume", 0)),
        volume_ext=int(g("VolumeExt", 0)),
        volume_closed=int(g("VolumeClosed", 0)),
        volume_closed_ext=int(g("VolumeClosedExt", 0)),
        price=to_points(g("Price", 0.0), digits),
        digits=digits,
        contract_size=round(float(g("ContractSize", 0.0))),
        comment=str(g("Comment", "") or ""),
        external_id=str(g("ExternalID", "") or ""),
    )


def _deal_from_dict(d: dict[str, Any]) -> Deal:
    """``deal_from_mt5`` of a wire dict (the simulator's pushed deals: the hot path).

    Positional arguments in ``Deal``'s field order: with 23 fields, keywords cost a frozen
    dataclass three times as much to build (a test holds this to the general path)."""
    get = d.get
    cd = int(get("DigitsCurrency", 2))
    digits = int(get("Digits", 0))
    action, entry = int(get("Action", 0)), int(get("Entry", 0))
    return Deal(
        int(get("Deal", 0)),  # deal
        int(get("Login", 0)),  # login
        _DEAL_ACTIONS[action] if action in _DEAL_ACTIONS else DealAction(action),
        _DEAL_ENTRIES[entry] if entry in _DEAL_ENTRIES else DealEntry(entry),
        int(get("TimeMsc", 0)) or int(get("Time", 0)) * 1000,  # time_msc
        cd,  # currency_digits
        _money(get("Profit", 0.0), cd),
        _money(get("Commission", 0.0), cd),
        _money(get("Storage", 0.0), cd),
        _money(get("Fee", 0.0), cd),
        int(get("Order", 0)),
        int(get("PositionID", 0)),
        int(get("Reason", 0)),
        str(get("Symbol", "") or ""),
        int(get("Volume", 0)),
        int(get("VolumeExt", 0)),
        int(get("VolumeClosed", 0)),
        int(get("VolumeClosedExt", 0)),
        _money(get("Price", 0.0), digits),  # price, in points
        digits,
        round(float(get("ContractSize", 0.0))),
        str(get("Comment", "") or ""),
        str(get("ExternalID", "") or ""),
    )


def position_from_mt5(obj: Any, currency_digits: int) -> Position:
    """An ``MTPosition`` as a :class:`Position`."""
    if type(obj) is dict:
        return _position_from_dict(obj, currency_digits)
    g = getter(obj)
    digits = int(g("Digits", 0))
    side = int(g("Action", 0))
    return Position(
        position=int(g("Position", 0)),
        login=int(g("Login", 0)),
        symbol=str(g("Symbol", "")),
        action=_POSITION_ACTIONS[side] if side in _POSITION_ACTIONS else PositionAction(side),
        volume=int(g("Volume", 0)),
        volume_ext=int(g("VolumeExt", 0)),
        price_open=to_points(g("PriceOpen", 0.0), digits),
        price_current=to_points(g("PriceCurrent", 0.0), digits),
        digits=digits,
        contract_size=round(float(g("ContractSize", 0.0))),
        profit=to_minor(g("Profit", 0.0), currency_digits),
        storage=to_minor(g("Storage", 0.0), currency_digits),
        currency_digits=currency_digits,
        time_create_msc=int(g("TimeCreateMsc", 0)),
        time_update_msc=int(g("TimeUpdateMsc", 0)),
        comment=str(g("Comment", "") or ""),
    )


def _position_from_dict(d: dict[str, Any], currency_digits: int) -> Position:
    """``position_from_mt5`` of a wire dict (pushed with every trade: the hot path), built
    positionally in ``Position``'s field order like :func:`_deal_from_dict`."""
    get = d.get
    digits = int(get("Digits", 0))
    side = int(get("Action", 0))
    return Position(
        int(get("Position", 0)),
        int(get("Login", 0)),
        str(get("Symbol", "")),
        _POSITION_ACTIONS[side] if side in _POSITION_ACTIONS else PositionAction(side),
        int(get("Volume", 0)),
        int(get("VolumeExt", 0)),
        _money(get("PriceOpen", 0.0), digits),
        _money(get("PriceCurrent", 0.0), digits),
        digits,
        round(float(get("ContractSize", 0.0))),
        _money(get("Profit", 0.0), currency_digits),
        _money(get("Storage", 0.0), currency_digits),
        currency_digits,
        int(get("TimeCreateMsc", 0)),
        int(get("TimeUpdateMsc", 0)),
        str(get("Comment", "") or ""),
    )


def user_from_mt5(obj: Any, currency_digits: int) -> PlatformUser:
    """An ``MTUser`` as a :class:`PlatformUser`."""
    g = getter(obj)
    return PlatformUser(
        login=int(g("Login", 0)),
        group=str(g("Group", "")),
        leverage=int(g("Leverage", 0)),
        rights=int(g("Rights", 0)),
        name=str(g("Name", "") or ""),
        email=str(g("EMail", "") or ""),
        comment=str(g("Comment", "") or ""),
        currency_digits=currency_digits,
        balance=to_minor(g("Balance", 0.0) or 0.0, currency_digits),
        credit=to_minor(g("Credit", 0.0) or 0.0, currency_digits),
    )


def account_from_mt5(obj: Any) -> AccountState:
    """An ``MTAccount`` as an :class:`AccountState`."""
    g = getter(obj)
    cd = int(g("CurrencyDigits", 2))
    return AccountState(
        login=int(g("Login", 0)),
        currency_digits=cd,
        balance=to_minor(g("Balance", 0.0), cd),
        credit=to_minor(g("Credit", 0.0), cd),
        equity=to_minor(g("Equity", 0.0), cd),
        margin=to_minor(g("Margin", 0.0), cd),
        margin_free=to_minor(g("MarginFree", 0.0), cd),
        margin_level=to_minor(g("MarginLevel", 0.0), 2),
        profit=to_minor(g("Profit", 0.0), cd),
        storage=to_minor(g("Storage", 0.0), cd),
    )
