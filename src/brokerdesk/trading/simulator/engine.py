"""The simulated trade server: groups, logins, symbols, a price feed, client trading and deals.

Pure and synchronous: the network server (:mod:`.server`) and the in-repo fakes of the MT5/MT4
manager interfaces both drive this one engine, so every adapter is tested against the same
behaviour. Objects it hands out ("wire" dicts) use MT5's field names and MT5's units: money and
prices as floats in major units, volumes as integers (``Volume`` 1/10,000 lot, ``VolumeExt``
1/100,000,000 lot), times as seconds and milliseconds. Internally every amount is an integer in
minor units and every price an integer in points; floats live only in the random-walk feed.
"""

from __future__ import annotations

import bisect
import json
import math
import random
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from brokerdesk.trading.platform.port import (
    COMMENT_MAX,
    DealAction,
    DealEntry,
    DealReason,
    PositionAction,
    Retcode,
    UserRights,
)

Listener = Callable[[str, dict[str, Any]], None]

BALANCE_ACTIONS = frozenset(
    {
        DealAction.DEAL_BALANCE,
        DealAction.DEAL_CREDIT,
        DealAction.DEAL_CHARGE,
        DealAction.DEAL_CORRECTION,
        DealAction.DEAL_BONUS,
        DealAction.DEAL_COMMISSION,
        DealAction.DEAL_TAX,
        DealAction.DEAL_DIVIDEND,
        DealAction.DEAL_DIVIDEND_FRANKED,
    }
)
MAX_DEALER_AMOUNT = 10**9  # major units; above it MT5 answers 4005 TRADE_MAX_MONEY
LOT = 10_000  # Volume units per lot


class EngineError(Exception):
    """An operation the server refuses, with MT5's return code."""

    def __init__(self, retcode: int, message: str) -> None:
        super().__init__(message)
        self.retcode = int(retcode)
        self.message = message


@dataclass
class Group:
    """A user group: currency, default leverage, commission and stop-out level."""

    name: str
    currency: str = "USD"
    currency_digits: int = 2
    commission_per_lot: int = 350  # minor units per lot per side (3.50 USD)
    margin_call_level: int = 100  # percent
    stop_out_level: int = 50  # percent


@dataclass
class Symbol:
    """A tradable symbol quoted in the account currency."""

    name: str
    contract_size: int
    digits: int
    price: float  # bid, random walk
    spread: int  # points
    volatility: float  # relative step per tick
    swap_long: int  # minor units per lot per rollover (negative = charged)
    swap_short: int

    @property
    def bid(self) -> int:
        """Bid in points."""
        return round(self.price * 10**self.digits)

    @property
    def ask(self) -> int:
        """Ask in points."""
        return self.bid + self.spread


DEFAULT_SYMBOLS = (
    Symbol("EURUSD", 100_000, 5, 1.08500, 12, 0.00004, -650, 180),
    Symbol("GBPUSD", 100_000, 5, 1.27000, 15, 0.00005, -420, -90),
    Symbol("XAUUSD", 100, 2, 2350.00, 30, 0.00006, -2100, 950),
    Symbol("US500", 1, 2, 5200.00, 50, 0.00005, -120, -80),
)
DEFAULT_GROUPS = (
    Group("real\\standard"),
    Group("real\\pro", commission_per_lot=250),
    Group("demo\\standard", commission_per_lot=0),
    Group("real\\eur", currency="EUR"),
    Group("real\\eu", stop_out_level=50),  # EU retail clients (the demo's automation moves them)
)


@dataclass
class User:
    """A login."""

    login: int
    group: str
    leverage: int
    rights: int
    name: str = ""
    email: str = ""
    comment: str = ""
    balance: int = 0  # minor units
    credit: int = 0
    registration: int = 0


@dataclass
class OpenPosition:
    """A position (netting of nothing: hedging mode, one position per opening order)."""

    position: int
    login: int
    symbol: str
    action: PositionAction
    volume: int  # 1/10,000 lot
    price_open: int  # points
    storage: int = 0  # accrued swap, minor units
    time_create_msc: int = 0
    time_update_msc: int = 0
    comment: str = ""
    margin: int = 0  # minor units held for it (fixed at the open price)


_SCALE = tuple(10**d for d in range(19))  # 10**digits without the power on the hot path


def _div_round(num: int, den: int) -> int:
    """num/den rounded half away from zero, in integers."""
    q, r = divmod(abs(num), den)
    if 2 * r >= den:
        q += 1
    return q if (num >= 0) == (den > 0) else -q


@dataclass
class Engine:
    """The trade server state and its rules."""

    name: str = "sim"
    seed: int | None = None
    first_deal: int = 1000
    first_login: int = 500_000
    clock_msc: Callable[[], int] = field(default=lambda: time.time_ns() // 1_000_000)
    deal_log: IO[str] | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.groups: dict[str, Group] = {g.name: Group(**vars(g)) for g in DEFAULT_GROUPS}
        self.symbols: dict[str, Symbol] = {s.name: Symbol(**vars(s)) for s in DEFAULT_SYMBOLS}
        self.users: dict[int, User] = {}
        self.positions: dict[int, OpenPosition] = {}
        self.positions_by_login: dict[int, dict[int, OpenPosition]] = {}
        # Deals are kept compactly, as their JSON (about 0.5 KB each), in ticket order;
        # ticket = first_deal + index. Times and per-login indexes sit in int arrays.
        self.deal_lines: list[str] = []
        self.deal_times = array("q")
        self.login_deals: dict[int, array[int]] = {}
        #: Indexes of deals a dealer deleted (``DealDelete``): kept, but no longer returned.
        self.deleted: set[int] = set()
        self.listeners: list[Listener] = []
        self.margin_used: dict[int, int] = {}
        #: JSON of the deal being emitted (encoded once for the log and for subscribers).
        self.deal_json = ""
        #: Whether anyone listens to position events (building them costs a third of a deal).
        self.want_positions = True
        self.traders: list[int] = []
        self._next_deal = self.first_deal
        self._next_order = self.first_deal * 10
        self._next_login = self.first_login
        self._last_msc = 0
        #: Server time of the newest dealer correction, strictly increasing: it orders the
        #: corrections of a deal even within one millisecond (sent next to the event).
        self.correction_msc = 0

    # --- plumbing --------------------------------------------------------------------------

    def now_msc(self) -> int:
        """Strictly non-decreasing server time in milliseconds."""
        now = max(self.clock_msc(), self._last_msc)
        self._last_msc = now
        return now

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            listener(kind, data)

    @property
    def last_ticket(self) -> int:
        """The newest deal ticket (0 before the first)."""
        return self._next_deal - 1 if self.deal_lines else 0

    @property
    def deal_count(self) -> int:
        """How many deals the server has made."""
        return len(self.deal_lines)

    def deal_at(self, index: int) -> dict[str, Any]:
        """The deal at ``index`` (ticket ``first_deal + index``)."""
        return dict(json.loads(self.deal_lines[index]))

    def iter_deals(self) -> Iterator[dict[str, Any]]:
        """Every deal, by ticket."""
        return (json.loads(line) for line in self.deal_lines)

    def _user(self, login: int) -> User:
        user = self.users.get(int(login))
        if user is None:
            raise EngineError(Retcode.MT_RET_ERR_NOTFOUND, f"login {login} not found")
        return user

    def _group(self, user: User) -> Group:
        return self.groups[user.group]

    def _money(self, amount: int, digits: int) -> float:
        return amount / 10**digits

    # --- users -----------------------------------------------------------------------------

    def user_add(
        self,
        group: str,
        leverage: int,
        name: str,
        *,
        login: int = 0,
        email: str = "",
        rights: int = UserRights.USER_RIGHT_ENABLED | UserRights.USER_RIGHT_PASSWORD,
        comment: str = "",
    ) -> dict[str, Any]:
        """``UserAdd``: a new login (``login=0`` allocates one)."""
        if group not in self.groups:
            raise EngineError(Retcode.MT_RET_ERR_PARAMS, f"group {group!r} not found")
        if not name:
            raise EngineError(Retcode.MT_RET_ERR_PARAMS, "name is required")
        if not 1 <= int(leverage) <= 10_000:
            raise EngineError(Retcode.MT_RET_ERR_PARAMS, "leverage out of range")
        if login:
            if login in self.users:
                raise EngineError(Retcode.MT_RET_USR_LOGIN_EXIST, f"login {login} exists")
        else:
            while self._next_login in self.users:
                self._next_login += 1
            login = self._next_login
            self._next_login += 1
        user = User(
            int(login),
            group,
            int(leverage),
            int(rights),
            name,
            email,
            comment[: COMMENT_MAX * 2],
            registration=self.now_msc() // 1000,
        )
        self.users[user.login] = user
        wire = self.user_wire(user)
        self._emit("user.add", wire)
        return wire

    def user_get(self, login: int) -> dict[str, Any]:
        """``UserRequest``."""
        return self.user_wire(self._user(login))

    def user_update(self, login: int, **fields: Any) -> dict[str, Any]:
        """``UserUpdate``: Group, Leverage, Rights, Name, EMail, Comment."""
        user = self._user(login)
        if "Group" in fields:
            if fields["Group"] not in self.groups:
                raise EngineError(Retcode.MT_RET_ERR_PARAMS, f"group {fields['Group']!r} not found")
            if self.groups[fields["Group"]].currency != self._group(user).currency and (
                user.balance or user.credit or self.positions_by_login.get(user.login)
            ):
                raise EngineError(3010, "group has a different currency")
            user.group = fields["Group"]
        if "Leverage" in fields:
            if not 1 <= int(fields["Leverage"]) <= 10_000:
                raise EngineError(Retcode.MT_RET_ERR_PARAMS, "leverage out of range")
            user.leverage = int(fields["Leverage"])
        if "Rights" in fields:
            user.rights = int(fields["Rights"])
        for wire_name, attr in (("Name", "name"), ("EMail", "email"), ("Comment", "comment")):
            if wire_name in fields:
                setattr(user, attr, str(fields[wire_name]))
        wire = self.user_wire(user)
        self._emit("user.update", wire)
        return wire

    def user_wire(self, user: User) -> dict[str, Any]:
        """An ``MTUser``-shaped dict."""
        digits = self._group(user).currency_digits
        return {
            "Login": user.login,
            "Group": user.group,
            "Leverage": user.leverage,
            "Rights": user.rights,
            "Name": user.name,
            "EMail": user.email,
            "Comment": user.comment,
            "Balance": self._money(user.balance, digits),
            "Credit": self._money(user.credit, digits),
            "Registration": user.registration,
        }

    # --- money -----------------------------------------------------------------------------

    def floating(self, login: int) -> tuple[int, int, int]:
        """(floating profit, accrued swaps, margin) of the login's open positions, minor units."""
        user = self._user(login)
        digits = self._group(user).currency_digits
        profit = storage = margin = 0
        for pos in self.positions_by_login.get(login, {}).values():
            sym = self.symbols[pos.symbol]
            profit += self._profit(pos, sym, self._close_price(pos, sym), pos.volume, digits)
            storage += pos.storage
            margin += _div_round(
                pos.volume * sym.contract_size * pos.price_open * 10**digits,
                LOT * 10**sym.digits * user.leverage,
            )
        return profit, storage, margin

    def account(self, login: int) -> dict[str, Any]:
        """``UserAccountRequest``: an ``MTAccount``-shaped dict."""
        user = self._user(login)
        digits = self._group(user).currency_digits
        profit, storage, margin = self.floating(login)
        equity = user.balance + user.credit + profit + storage
        level = equity * 100 / margin if margin else 0.0
        m = self._money
        return {
            "Login": user.login,
            "CurrencyDigits": digits,
            "Balance": m(user.balance, digits),
            "Credit": m(user.credit, digits),
            "Profit": m(profit, digits),
            "Storage": m(storage, digits),
            "Equity": m(equity, digits),
            "Margin": m(margin, digits),
            "MarginFree": m(equity - margin, digits),
            "MarginLevel": round(level, 2),
        }

    def dealer_balance(self, login: int, amount: int, action: int, comment: str) -> dict[str, Any]:
        """``DealerBalance`` with ``amount`` in signed minor units; returns the deal."""
        user = self._user(login)
        if action not in BALANCE_ACTIONS:
            raise EngineError(Retcode.MT_RET_ERR_PARAMS, f"action {action} not allowed")
        digits = self._group(user).currency_digits
        if amount == 0:
            raise EngineError(Retcode.MT_RET_ERR_PARAMS, "zero amount")
        if abs(amount) > MAX_DEALER_AMOUNT * 10**digits:
            raise EngineError(Retcode.MT_RET_TRADE_MAX_MONEY, "amount too large")
        if action == DealAction.DEAL_CREDIT:
            if amount < 0 and -amount > user.credit:
                raise EngineError(Retcode.MT_RET_REQUEST_NO_MONEY, "credit out above credit")
            user.credit += amount
        else:
            if amount < 0:
                profit, storage, margin = self.floating(login)
                free = user.balance + user.credit + profit + storage - margin
                if -amount > min(user.balance, free):
                    raise EngineError(Retcode.MT_RET_REQUEST_NO_MONEY, "not enough money")
            user.balance += amount
        return self._deal(
            user,
            action=DealAction(action),
            entry=DealEntry.ENTRY_IN,
            reason=DealReason.DEAL_REASON_DEALER,
            profit=amount,
            comment=comment[:COMMENT_MAX],
        )

    # --- deals -----------------------------------------------------------------------------

    def _deal(
        self,
        user: User,
        *,
        action: DealAction,
        entry: DealEntry,
        reason: int,
        profit: int = 0,
        commission: int = 0,
        storage: int = 0,
        symbol: Symbol | None = None,
        volume: int = 0,
        volume_closed: int = 0,
        price: int = 0,
        price_position: int = 0,
        order: int = 0,
        position_id: int = 0,
        comment: str = "",
    ) -> dict[str, Any]:
        ticket = self._next_deal
        self._next_deal += 1
        now = self.now_msc()
        digits = self.groups[user.group].currency_digits
        scale = _SCALE[symbol.digits] if symbol else 1
        money = _SCALE[digits]
        login = user.login
        wire = {
            "Deal": ticket,
            "Login": login,
            "Order": order,
            "PositionID": position_id,
            "Action": int(action),
            "Entry": int(entry),
            "Reason": int(reason),
            "Symbol": symbol.name if symbol else "",
            "Volume": volume,
            "VolumeExt": volume * 10_000,
            "VolumeClosed": volume_closed,
            "VolumeClosedExt": volume_closed * 10_000,
            "Price": price / scale,
            "PricePosition": price_position / scale,
            "Digits": symbol.digits if symbol else 0,
            "DigitsCurrency": digits,
            "ContractSize": float(symbol.contract_size) if symbol else 0.0,
            "Profit": profit / money,
            "Commission": commission / money,
            "Storage": storage / money,
            "Fee": 0.0,
            "Time": now // 1000,
            "TimeMsc": now,
            "Comment": comment,
            "ExternalID": "",
        }
        # Encoded once, for the history, the deal log and every subscriber (orjson: compact
        # JSON that parses to the same values as the standard library's, 4x faster).
        self.deal_json = deal_json = orjson.dumps(wire).decode()
        index = len(self.deal_lines)
        self.deal_lines.append(deal_json)
        self.deal_times.append(now)
        by_login = self.login_deals.get(login)
        if by_login is None:
            by_login = self.login_deals[login] = array("q")
        by_login.append(index)
        if self.deal_log is not None:
            self.deal_log.write(deal_json + "\n")
        self._emit("deal.add", wire)
        return wire

    def deals_of(self, login: int, from_msc: int, to_msc: int) -> list[dict[str, Any]]:
        """``DealRequest(login, from, to)``."""
        self._user(login)
        times = self.deal_times
        deleted = self.deleted
        return [
            self.deal_at(i)
            for i in self.login_deals.get(login, ())
            if from_msc <= times[i] <= to_msc and i not in deleted
        ]

    def deals_since(self, after_ticket: int, limit: int) -> list[dict[str, Any]]:
        """Deals with a ticket above ``after_ticket`` (ascending, at most ``limit``)."""
        start = max(0, after_ticket + 1 - self.first_deal)
        if not self.deleted:
            return [json.loads(line) for line in self.deal_lines[start : start + limit]]
        found: list[dict[str, Any]] = []
        for i in range(start, len(self.deal_lines)):
            if len(found) >= limit:
                break
            if i not in self.deleted:
                found.append(json.loads(self.deal_lines[i]))
        return found

    def deals_by_time(self, from_msc: int, to_msc: int) -> list[dict[str, Any]]:
        """``DealRequestByGroup("*", from, to)``."""
        lo = bisect.bisect_left(self.deal_times, from_msc)
        hi = bisect.bisect_right(self.deal_times, to_msc)
        return [json.loads(self.deal_lines[i]) for i in range(lo, hi) if i not in self.deleted]

    # --- dealer corrections ----------------------------------------------------------------

    #: Fields a dealer may change with ``DealUpdate`` here (money, volume, price, texts).
    CORRECTABLE = frozenset(
        {
            "Profit",
            "Commission",
            "Storage",
            "Fee",
            "Volume",
            "VolumeClosed",
            "Price",
            "Comment",
            "ExternalID",
            "Reason",
        }
    )

    def _deal_index(self, ticket: int) -> int:
        index = int(ticket) - self.first_deal
        if not 0 <= index < len(self.deal_lines) or index in self.deleted:
            raise EngineError(Retcode.MT_RET_ERR_NOTFOUND, f"deal {ticket} not found")
        return index

    def _balance_effect(self, wire: dict[str, Any]) -> tuple[int, int]:
        """(balance, credit) change of a deal in minor units, as the server booked it."""
        scale = 10 ** int(wire["DigitsCurrency"])
        money = round(float(wire["Profit"]) * scale)
        if int(wire["Action"]) == DealAction.DEAL_CREDIT:
            return 0, money
        costs = sum(round(float(wire[k]) * scale) for k in ("Commission", "Storage", "Fee"))
        return money + costs, 0

    def _rebook(self, user: User, before: dict[str, Any], after: dict[str, Any] | None) -> None:
        """Fix the user's balance and credit to the changed history (what a dealer's
        ``UserBalanceCheck`` with the fix flag does after correcting deals)."""
        b0, c0 = self._balance_effect(before)
        b1, c1 = self._balance_effect(after) if after is not None else (0, 0)
        user.balance += b1 - b0
        user.credit += c1 - c0

    def deal_update(self, ticket: int, **changes: Any) -> dict[str, Any]:
        """``DealUpdate`` by a dealer: change the named MT5 fields of a deal (money in major
        units, as on the wire); the user's balance follows. Emits ``deal.update``."""
        index = self._deal_index(ticket)
        unknown = set(changes) - self.CORRECTABLE
        if unknown:
            raise EngineError(Retcode.MT_RET_ERR_PARAMS, f"fields not correctable: {unknown}")
        before = self.deal_at(index)
        after = dict(before)
        for name, value in changes.items():
            if name in ("Comment", "ExternalID"):
                after[name] = str(value)[:COMMENT_MAX]
            elif name in ("Volume", "VolumeClosed", "Reason"):
                after[name] = int(value)
                if name != "Reason":
                    after[name + "Ext"] = int(value) * 10_000
            else:
                after[name] = float(value)
        self._rebook(self._user(int(before["Login"])), before, after)
        self.deal_lines[index] = json.dumps(after, separators=(",", ":"))
        self.correction_msc = max(self.now_msc(), self.correction_msc + 1)
        self._emit("deal.update", after)
        return after

    def deal_delete(self, ticket: int) -> dict[str, Any]:
        """``DealDelete`` by a dealer: the deal leaves the history and the user's balance.
        Emits ``deal.delete`` with the deal as it was."""
        index = self._deal_index(ticket)
        before = self.deal_at(index)
        self._rebook(self._user(int(before["Login"])), before, None)
        self.deleted.add(index)
        self.correction_msc = max(self.now_msc(), self.correction_msc + 1)
        self._emit("deal.delete", before)
        return before

    # --- snapshots -------------------------------------------------------------------------

    def all_positions(self) -> list[dict[str, Any]]:
        """``PositionRequestByGroup("*")``: every open position on the server."""
        return [self.position_wire(p) for p in self.positions.values()]

    def accounts_of(self, logins: list[int]) -> list[dict[str, Any]]:
        """``UserAccountRequestByLogins``: accounts of the known logins among ``logins``."""
        return [self.account(int(x)) for x in logins if int(x) in self.users]

    # --- prices and trading ----------------------------------------------------------------

    def tick(self) -> None:
        """Move every symbol one random-walk step."""
        for sym in self.symbols.values():
            sym.price *= math.exp(self.rng.gauss(0.0, sym.volatility))

    def set_price(self, symbol: str, bid: float) -> None:
        """Put a symbol's bid at ``bid`` (tests and demos)."""
        self.symbols[symbol].price = float(bid)

    def _close_price(self, pos: OpenPosition, sym: Symbol) -> int:
        return sym.bid if pos.action == PositionAction.POSITION_BUY else sym.ask

    def _profit(self, pos: OpenPosition, sym: Symbol, close: int, volume: int, digits: int) -> int:
        diff = close - pos.price_open
        if pos.action == PositionAction.POSITION_SELL:
            diff = -diff
        return _div_round(diff * volume * sym.contract_size * 10**digits, LOT * 10**sym.digits)

    def _commission(self, user: User, volume: int) -> int:
        return -_div_round(self._group(user).commission_per_lot * volume, LOT)

    def position_wire(self, pos: OpenPosition) -> dict[str, Any]:
        """An ``MTPosition``-shaped dict."""
        sym = self.symbols[pos.symbol]
        user = self._user(pos.login)
        digits = self._group(user).currency_digits
        current = self._close_price(pos, sym)
        scale = 10**sym.digits
        return {
            "Position": pos.position,
            "Login": pos.login,
            "Symbol": pos.symbol,
            "Action": int(pos.action),
            "Volume": pos.volume,
            "VolumeExt": pos.volume * 10_000,
            "PriceOpen": pos.price_open / scale,
            "PriceCurrent": current / scale,
            "Digits": sym.digits,
            "ContractSize": float(sym.contract_size),
            "Profit": self._profit(pos, sym, current, pos.volume, digits) / 10**digits,
            "Storage": pos.storage / 10**digits,
            "TimeCreateMsc": pos.time_create_msc,
            "TimeUpdateMsc": pos.time_update_msc,
            "Comment": pos.comment,
        }

    def positions_of(self, login: int) -> list[dict[str, Any]]:
        """``PositionRequest(login)``."""
        self._user(login)
        return [self.position_wire(p) for p in self.positions_by_login.get(login, {}).values()]

    def open_position(
        self,
        login: int,
        symbol: str,
        action: int,
        volume: int,
        reason: int = DealReason.DEAL_REASON_CLIENT,
    ) -> dict[str, Any]:
        """A client market order that opens a position: one ``ENTRY_IN`` deal."""
        user = self._user(login)
        if user.rights & UserRights.USER_RIGHT_TRADE_DISABLED or not (
            user.rights & UserRights.USER_RIGHT_ENABLED
        ):
            raise EngineError(Retcode.MT_RET_REQUEST_TRADE_DISABLED, "trading disabled")
        if volume <= 0:
            raise EngineError(Retcode.MT_RET_ERR_PARAMS, "volume must be positive")
        sym = self.symbols[symbol]
        side = PositionAction(action)
        price = sym.ask if side == PositionAction.POSITION_BUY else sym.bid
        order = self._next_order
        self._next_order += 1
        now = self.now_msc()
        pos = OpenPosition(order, login, symbol, side, volume, price, 0, now, now)
        digits = self._group(user).currency_digits
        margin_needed = _div_round(
            volume * sym.contract_size * price * 10**digits, LOT * 10**sym.digits * user.leverage
        )
        used = self.margin_used.get(login, 0)
        if user.balance + user.credit - used < 4 * margin_needed:
            # Near the limit: the exact check, with floating profit and swaps.
            profit, storage, margin = self.floating(login)
            if user.balance + user.credit + profit + storage - margin < margin_needed:
                raise EngineError(Retcode.MT_RET_REQUEST_NO_MONEY, "not enough margin")
        self.margin_used[login] = used + margin_needed
        pos.margin = margin_needed
        commission = self._commission(user, volume)
        user.balance += commission
        self.positions[order] = pos
        self.positions_by_login.setdefault(login, {})[order] = pos
        deal = self._deal(
            user,
            action=DealAction(int(side)),
            entry=DealEntry.ENTRY_IN,
            reason=reason,
            commission=commission,
            symbol=sym,
            volume=volume,
            price=price,
            price_position=price,
            order=order,
            position_id=order,
        )
        if self.want_positions:
            self._emit("position.add", self.position_wire(pos))
        return deal

    def close_position(
        self,
        position: int,
        volume: int | None = None,
        reason: int = DealReason.DEAL_REASON_CLIENT,
    ) -> dict[str, Any]:
        """Close all or part of a position: one ``ENTRY_OUT`` deal with profit, swap, commission."""
        pos = self.positions.get(position)
        if pos is None:
            raise EngineError(Retcode.MT_RET_ERR_NOTFOUND, f"position {position} not found")
        user = self._user(pos.login)
        sym = self.symbols[pos.symbol]
        volume = pos.volume if volume is None or volume >= pos.volume else int(volume)
        if volume <= 0:
            raise EngineError(Retcode.MT_RET_ERR_PARAMS, "volume must be positive")
        digits = self._group(user).currency_digits
        close = self._close_price(pos, sym)
        profit = self._profit(pos, sym, close, volume, digits)
        storage = _div_round(pos.storage * volume, pos.volume)
        commission = self._commission(user, volume)
        user.balance += profit + storage + commission
        order = self._next_order
        self._next_order += 1
        opposite = (
            DealAction.DEAL_SELL
            if pos.action == PositionAction.POSITION_BUY
            else DealAction.DEAL_BUY
        )
        deal = self._deal(
            user,
            action=opposite,
            entry=DealEntry.ENTRY_OUT,
            reason=reason,
            profit=profit,
            commission=commission,
            storage=storage,
            symbol=sym,
            volume=volume,
            volume_closed=volume,
            price=close,
            price_position=pos.price_open,
            order=order,
            position_id=pos.position,
        )
        released = _div_round(pos.margin * volume, pos.volume)
        pos.margin -= released
        self.margin_used[pos.login] = self.margin_used.get(pos.login, 0) - released
        pos.volume -= volume
        pos.storage -= storage
        pos.time_update_msc = deal["TimeMsc"]
        if pos.volume == 0:
            del self.positions[pos.position]
            del self.positions_by_login[pos.login][pos.position]
            if self.want_positions:
                self._emit("position.delete", self.position_wire(pos))
        elif self.want_positions:
            self._emit("position.update", self.position_wire(pos))
        return deal

    def rollover(self) -> None:
        """Charge or pay the day's swap into every open position's ``Storage``."""
        for pos in self.positions.values():
            sym = self.symbols[pos.symbol]
            rate = sym.swap_long if pos.action == PositionAction.POSITION_BUY else sym.swap_short
            pos.storage += _div_round(rate * pos.volume, LOT)

    def check_stop_out(self, login: int) -> list[dict[str, Any]]:
        """Close the worst positions of a login whose margin level fell below stop-out."""
        user = self._user(login)
        level = self._group(user).stop_out_level
        closed: list[dict[str, Any]] = []
        while self.positions_by_login.get(login):
            profit, storage, margin = self.floating(login)
            equity = user.balance + user.credit + profit + storage
            if margin == 0 or equity * 100 >= margin * level:
                break
            worst = min(
                self.positions_by_login[login].values(),
                key=lambda p: self._profit(
                    p,
                    self.symbols[p.symbol],
                    self._close_price(p, self.symbols[p.symbol]),
                    p.volume,
                    self._group(user).currency_digits,
                ),
            )
            closed.append(self.close_position(worst.position, reason=DealReason.DEAL_REASON_SO))
        if closed:
            self._emit("account.stop_out", self.account(login))
        return closed

    # --- simulated clients -----------------------------------------------------------------

    def add_traders(
        self, count: int, deposit: int = 1_000_000, group: str = "real\\standard"
    ) -> None:
        """Create ``count`` simulated clients, each with a deposit (minor units)."""
        for i in range(count):
            wire = self.user_add(group, 100, f"Trader {i + 1}")
            self.dealer_balance(wire["Login"], deposit, DealAction.DEAL_BALANCE, "initial deposit")
            self.traders.append(wire["Login"])

    def random_activity(self, deals: int) -> int:
        """Let the simulated clients make about ``deals`` deals; returns how many they made."""
        if not self.traders:
            return 0
        made = 0
        rng = self.rng
        symbols = list(self.symbols)
        attempts = 0
        while made < deals and attempts < deals * 4 + 10:
            attempts += 1
            login = self.traders[rng.randrange(len(self.traders))]
            open_positions = self.positions_by_login.get(login)
            try:
                if open_positions and (len(open_positions) >= 5 or rng.random() < 0.5):
                    pos = rng.choice(list(open_positions.values()))
                    if pos.volume >= 200 and rng.random() < 0.3:
                        part = rng.randrange(1, pos.volume // 100) * 100
                        self.close_position(pos.position, part)
                    else:
                        self.close_position(pos.position)
                else:
                    volume = rng.choice((100, 200, 500, 1000, 2000))
                    self.open_position(login, rng.choice(symbols), rng.randrange(2), volume)
                made += 1
            except EngineError:
                user = self.users[login]
                if user.balance < 10_000:
                    before = self.deal_count
                    self.dealer_balance(login, 1_000_000, DealAction.DEAL_BALANCE, "top up")
                    made += self.deal_count - before
        return made

    def check_stop_outs(self) -> int:
        """Run the stop-out check for every login with open positions; returns deals made."""
        return sum(
            len(self.check_stop_out(login))
            for login in list(self.positions_by_login)
            if self.positions_by_login[login]
        )
