"""The platform port: broker-side operations on a trading server, modelled on the MT5 Manager API.

One client has many platform logins; each login is one trading account on one server. Money and
volume come from **deals** (``IMTDeal``), never from orders: a partial close is one more
``ENTRY_OUT`` deal with its own volume, profit, commission and swap.

Units in every type here:

* money (balance, profit, commission, swap, …): ``int`` minor units of the account currency,
  with ``currency_digits`` (MT5 ``CurrencyDigits`` / ``DigitsCurrency``) saying the scale;
* volume: MT5's integers, ``volume`` in 1/10,000 lot (10500 = 1.05 lots) and ``volume_ext``
  in 1/100,000,000 lot;
* prices: ``int`` points, ``price / 10**digits`` (MT5 ``Digits``);
* times: ``int`` milliseconds since 1970 (MT5 ``TimeMsc``), trade-server time.

Adapters convert the platform's floats at their edge (:func:`to_minor`, :func:`from_minor`).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from enum import IntEnum, IntFlag, StrEnum
from typing import Any, Protocol, runtime_checkable

from brokerdesk.core.errors import DomainError, ValidationError

#: MT5 keeps 31 characters of a deal comment and cuts the rest silently; we refuse instead.
COMMENT_MAX = 31


class DealAction(IntEnum):
    """``IMTDeal::EnDealAction``."""

    DEAL_BUY = 0
    DEAL_SELL = 1
    DEAL_BALANCE = 2
    DEAL_CREDIT = 3
    DEAL_CHARGE = 4
    DEAL_CORRECTION = 5
    DEAL_BONUS = 6
    DEAL_COMMISSION = 7
    DEAL_COMMISSION_DAILY = 8
    DEAL_COMMISSION_MONTHLY = 9
    DEAL_AGENT_DAILY = 10
    DEAL_AGENT_MONTHLY = 11
    DEAL_INTERESTRATE = 12
    DEAL_BUY_CANCELED = 13
    DEAL_SELL_CANCELED = 14
    DEAL_DIVIDEND = 15
    DEAL_DIVIDEND_FRANKED = 16
    DEAL_TAX = 17
    DEAL_AGENT = 18
    DEAL_SO_COMPENSATION = 19
    DEAL_SO_COMPENSATION_CREDIT = 20


class DealEntry(IntEnum):
    """``IMTDeal::EnDealEntry``."""

    ENTRY_IN = 0
    ENTRY_OUT = 1
    ENTRY_INOUT = 2
    ENTRY_OUT_BY = 3


class DealReason(IntEnum):
    """``IMTDeal::EnDealReason`` (the values we produce or are likely to meet)."""

    DEAL_REASON_CLIENT = 0
    DEAL_REASON_EXPERT = 1
    DEAL_REASON_DEALER = 2
    DEAL_REASON_SL = 3
    DEAL_REASON_TP = 4
    DEAL_REASON_SO = 5
    DEAL_REASON_ROLLOVER = 6
    DEAL_REASON_EXTERNAL_CLIENT = 7
    DEAL_REASON_VMARGIN = 8
    DEAL_REASON_GATEWAY = 9
    DEAL_REASON_SIGNAL = 10
    DEAL_REASON_SETTLEMENT = 11
    DEAL_REASON_TRANSFER = 12
    DEAL_REASON_SYNC = 13
    DEAL_REASON_EXTERNAL_SERVICE = 14
    DEAL_REASON_MIGRATION = 15
    DEAL_REASON_MOBILE = 16
    DEAL_REASON_WEB = 17
    DEAL_REASON_SPLIT = 18
    DEAL_REASON_CORPORATE_ACTION = 19


class PositionAction(IntEnum):
    """``IMTPosition::EnPositionAction``."""

    POSITION_BUY = 0
    POSITION_SELL = 1


class UserRights(IntFlag):
    """``IMTUser::EnUsersRights`` bits."""

    USER_RIGHT_NONE = 0
    USER_RIGHT_ENABLED = 0x1
    USER_RIGHT_PASSWORD = 0x2
    USER_RIGHT_TRADE_DISABLED = 0x4
    USER_RIGHT_INVESTOR = 0x8
    USER_RIGHT_CONFIRMED = 0x10
    USER_RIGHT_TRAILING = 0x20
    USER_RIGHT_EXPERT = 0x40
    USER_RIGHT_REPORTS = 0x100
    USER_RIGHT_READONLY = 0x200
    USER_RIGHT_RESET_PASS = 0x400
    USER_RIGHT_OTP_ENABLED = 0x800
    USER_RIGHT_API_ENABLED = 0x4000
    USER_RIGHT_TECHNICAL = 0x10000
    USER_RIGHT_EXCLUDE_REPORTS = 0x20000


class Retcode(IntEnum):
    """``EnMTAPIRetcode`` values the adapters map to errors."""

    MT_RET_OK = 0
    MT_RET_OK_NONE = 1
    MT_RET_ERROR = 2
    MT_RET_ERR_PARAMS = 3
    MT_RET_ERR_DATA = 4
    MT_RET_ERR_NETWORK = 7
    MT_RET_ERR_PERMISSIONS = 8
    MT_RET_ERR_TIMEOUT = 9
    MT_RET_ERR_CONNECTION = 10
    MT_RET_ERR_NOSERVICE = 11
    MT_RET_ERR_FREQUENT = 12
    MT_RET_ERR_NOTFOUND = 13
    MT_RET_ERR_SHUTDOWN = 15
    MT_RET_ERR_DUPLICATE = 17
    MT_RET_AUTH_SERVER_BUSY = 1018
    MT_RET_USR_LOGIN_EXHAUSTED = 3002
    MT_RET_USR_LOGIN_PROHIBITED = 3003
    MT_RET_USR_LOGIN_EXIST = 3004
    MT_RET_TRADE_MAX_MONEY = 4005
    MT_RET_REQUEST_DONE = 10009
    MT_RET_REQUEST_TRADE_DISABLED = 10017
    MT_RET_REQUEST_NO_MONEY = 10019


RETRYABLE_RETCODES = frozenset({7, 9, 10, 12, 15, 1018})


class BalanceOp(StrEnum):
    """The four balance operations the back office performs."""

    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"
    CREDIT_IN = "credit_in"
    CREDIT_OUT = "credit_out"

    @property
    def action(self) -> DealAction:
        """The deal action the platform records for this operation."""
        if self in (BalanceOp.DEPOSIT, BalanceOp.WITHDRAWAL):
            return DealAction.DEAL_BALANCE
        return DealAction.DEAL_CREDIT

    @property
    def sign(self) -> int:
        """+1 when money goes onto the account, -1 when it comes off."""
        return 1 if self in (BalanceOp.DEPOSIT, BalanceOp.CREDIT_IN) else -1


# --- errors ------------------------------------------------------------------------------------


class PlatformError(DomainError):
    """The platform refused or failed an operation; ``retcode`` is MT5's ``EnMTAPIRetcode``."""

    code = "platform_error"
    http_status = 502

    def __init__(
        self, message: str, *, retcode: int = Retcode.MT_RET_ERROR, **details: Any
    ) -> None:
        super().__init__(message, **details)
        self.retcode = int(retcode)

    @property
    def retryable(self) -> bool:
        """True when MT5 documents the code as transient (network, timeout, busy…)."""
        return self.retcode in RETRYABLE_RETCODES


class PlatformConnectionError(PlatformError):
    """No connection to the server (or it dropped): nothing is known about in-flight work."""

    code = "platform_connection"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, retcode=Retcode.MT_RET_ERR_CONNECTION, **details)


class ConfirmationLost(PlatformError):
    """A write was sent but its answer never came: it may or may not have been applied.

    The caller must look for its deal by comment (:meth:`PlatformPort.find_balance_deal`)
    before retrying; MT5's ``DealerBalance`` is not idempotent.
    """

    code = "platform_confirmation_lost"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, retcode=Retcode.MT_RET_ERR_TIMEOUT, **details)


class NoMoney(PlatformError):
    """Withdrawal or credit-out above what the account holds (MT5 10019)."""

    code = "platform_no_money"
    http_status = 409

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, retcode=Retcode.MT_RET_REQUEST_NO_MONEY, **details)


class UnknownLogin(PlatformError):
    """No such login on this server."""

    code = "platform_unknown_login"
    http_status = 404

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, retcode=Retcode.MT_RET_ERR_NOTFOUND, **details)


# --- unit conversion at the edge ---------------------------------------------------------------


_SCALE = tuple(10**d for d in range(19))


def to_minor(value: float | Decimal | str | int, digits: int) -> int:
    """A platform amount (float in major units) as integer minor units, rounded half-even.

    ``repr`` of a float is the shortest string that round-trips, so ``0.1`` becomes exactly
    ``Decimal("0.1")`` rather than its binary expansion. Fast path (deals by the ten thousand):
    a float whose scaled value is far from a half and below 1e14 rounds the same in binary
    (the error is below 1e-2 there), so only the rest goes through ``Decimal``.
    """
    if type(value) is float and digits >= 0:
        scaled = value * _SCALE[digits] if digits < len(_SCALE) else value * 10**digits
        nearest = round(scaled)
        if abs(scaled) < 1e14 and abs(scaled - nearest) < 0.45:
            return nearest
    elif type(value) is int and digits >= 0:
        return value * 10**digits
    dec = (
        value
        if isinstance(value, Decimal)
        else Decimal(repr(value) if isinstance(value, float) else str(value))
    )
    return int((dec.scaleb(digits)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def from_minor(amount: int, digits: int) -> float:
    """Integer minor units as the float the platform API takes (only at the adapter edge)."""
    return float(Decimal(amount).scaleb(-digits))


def to_points(price: float | Decimal | str, digits: int) -> int:
    """A platform price as integer points of ``10**-digits``."""
    return to_minor(price, digits)


def check_comment(comment: str) -> str:
    """Refuse a comment the platform would cut (MT5 keeps 31 characters)."""
    if len(comment) > COMMENT_MAX:
        raise ValidationError(
            f"Platform comments hold {COMMENT_MAX} characters; this one has {len(comment)}.",
            code="comment_too_long",
            field="comment",
        )
    return comment


def transfer_comment(transfer_id: uuid.UUID, prefix: str = "bd:") -> str:
    """Our transfer id in a balance-deal comment: ``bd:`` + 26 base32 characters (29 in all).

    A UUID with hyphens (36 characters) does not fit MT5's 31-character comment.
    """
    text = base64.b32encode(transfer_id.bytes).decode("ascii").rstrip("=").lower()
    return check_comment(prefix + text)


def transfer_id_from_comment(comment: str, prefix: str = "bd:") -> uuid.UUID | None:
    """The transfer id written by :func:`transfer_comment`, or None for any other comment."""
    if not comment.startswith(prefix) or len(comment) != len(prefix) + 26:
        return None
    try:
        raw = base64.b32decode(comment[len(prefix) :].upper() + "======")
    except ValueError:
        return None
    return uuid.UUID(bytes=raw) if len(raw) == 16 else None


def msc_to_datetime(time_msc: int) -> datetime:
    """Milliseconds since 1970 as an aware datetime (the server's clock, labelled UTC)."""
    return datetime.fromtimestamp(time_msc / 1000, tz=UTC)


def datetime_to_msc(moment: datetime) -> int:
    """An aware datetime as milliseconds since 1970."""
    if moment.tzinfo is None:
        raise ValidationError("Datetimes given to the platform port must be timezone-aware.")
    return int(moment.timestamp() * 1000)


# --- data ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deal:
    """One ``IMTDeal``: a trade execution leg or a balance/credit/commission operation."""

    deal: int  # Deal: the ticket, unique and increasing per server
    login: int  # Login
    action: DealAction  # Action
    entry: DealEntry  # Entry
    time_msc: int  # TimeMsc
    currency_digits: int  # DigitsCurrency: scale of every money field below
    profit: int = 0  # Profit (for balance/credit deals: the amount)
    commission: int = 0  # Commission (negative = charged)
    storage: int = 0  # Storage (swap)
    fee: int = 0  # Fee
    order: int = 0  # Order
    position_id: int = 0  # PositionID
    reason: int = DealReason.DEAL_REASON_CLIENT  # Reason
    symbol: str = ""  # Symbol
    volume: int = 0  # Volume, 1/10,000 lot
    volume_ext: int = 0  # VolumeExt, 1/100,000,000 lot
    volume_closed: int = 0  # VolumeClosed (ENTRY_OUT / ENTRY_INOUT only)
    volume_closed_ext: int = 0  # VolumeClosedExt
    price: int = 0  # Price, in points of 10**-digits
    digits: int = 0  # Digits of the symbol's price
    contract_size: int = 0  # ContractSize
    comment: str = ""  # Comment (31 characters)
    external_id: str = ""  # ExternalID

    @property
    def is_trade(self) -> bool:
        """True for BUY/SELL executions (the only deals that carry traded volume)."""
        return self.action in (DealAction.DEAL_BUY, DealAction.DEAL_SELL)

    @property
    def time(self) -> datetime:
        """``TimeMsc`` as a datetime."""
        return msc_to_datetime(self.time_msc)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (ints and strings only)."""
        data = {name: getattr(self, name) for name in _DEAL_FIELDS}
        data["action"] = int(self.action)
        data["entry"] = int(self.entry)
        data["reason"] = int(self.reason)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Deal:
        """The inverse of :meth:`to_dict`."""
        values = dict(data)
        values["action"] = DealAction(values["action"])
        values["entry"] = DealEntry(values["entry"])
        return cls(**values)


_DEAL_FIELDS = tuple(f.name for f in fields(Deal))


@dataclass(frozen=True, slots=True)
class Position:
    """One ``IMTPosition``: an open position of a login."""

    position: int  # Position: the ticket
    login: int
    symbol: str
    action: PositionAction
    volume: int  # 1/10,000 lot
    volume_ext: int  # 1/100,000,000 lot
    price_open: int  # points
    price_current: int  # points
    digits: int
    contract_size: int
    profit: int  # floating, minor units
    storage: int  # accrued swap, minor units
    currency_digits: int
    time_create_msc: int
    time_update_msc: int
    comment: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (one per position event: no ``asdict`` deep copy)."""
        data = {name: getattr(self, name) for name in _POSITION_FIELDS}
        data["action"] = int(self.action)
        return data


_POSITION_FIELDS = tuple(f.name for f in fields(Position))


@dataclass(frozen=True, slots=True)
class AccountState:
    """``IMTAccount``: the account's money right now (minor units)."""

    login: int
    currency_digits: int
    balance: int
    credit: int
    equity: int
    margin: int
    margin_free: int
    #: Margin level in hundredths of a percent (12345 = 123.45 %); 0 when no margin is used.
    margin_level: int
    profit: int = 0  # floating P/L of open positions
    storage: int = 0  # accrued swaps of open positions

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class PlatformUser:
    """``IMTUser``: a login on a server."""

    login: int
    group: str
    leverage: int
    rights: int
    name: str = ""
    email: str = ""
    comment: str = ""
    currency_digits: int = 2
    balance: int = 0  # IMTUser Balance, minor units (read-only on MT5: moved by deals only)
    credit: int = 0  # IMTUser Credit, minor units

    @property
    def enabled(self) -> bool:
        """The login may connect."""
        return bool(self.rights & UserRights.USER_RIGHT_ENABLED)

    @property
    def trade_enabled(self) -> bool:
        """The login may trade."""
        return not self.rights & UserRights.USER_RIGHT_TRADE_DISABLED

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class NewUser:
    """What :meth:`PlatformPort.create_user` needs. ``login=0`` lets the server allocate."""

    group: str
    leverage: int
    name: str
    email: str = ""
    master_password: str = ""
    investor_password: str = ""
    login: int = 0
    trade_enabled: bool = True
    comment: str = ""


class EventKind(StrEnum):
    """What a platform pushed (MT5 sink callbacks) or what happened to the link."""

    DEAL_ADD = "deal.add"  # IMTDealSink::OnDealAdd
    DEAL_UPDATE = "deal.update"  # OnDealUpdate
    DEAL_DELETE = "deal.delete"  # OnDealDelete
    POSITION_ADD = "position.add"  # IMTPositionSink::OnPositionAdd
    POSITION_UPDATE = "position.update"
    POSITION_DELETE = "position.delete"
    USER_ADD = "user.add"  # IMTUserSink::OnUserAdd
    USER_UPDATE = "user.update"
    USER_DELETE = "user.delete"
    # IMTAccountSink (ManagerAPI.UserAccountSubscribe): the only account pushes MT5 has.
    ACCOUNT_MARGIN_CALL = "account.margin_call"  # OnAccountMarginCallEnter
    ACCOUNT_MARGIN_CALL_LEAVE = "account.margin_call_leave"  # OnAccountMarginCallLeave
    ACCOUNT_STOP_OUT = "account.stop_out"  # OnAccountStopOutEnter
    ACCOUNT_STOP_OUT_LEAVE = "account.stop_out_leave"  # OnAccountStopOutLeave
    #: The account read from the pumped cache (``UserAccountGet``) when ``OnUserUpdate`` says
    #: the user record (balance, credit…) changed, or requested after a reconnect.
    ACCOUNT_UPDATE = "account.update"
    CONNECTION_LOST = "connection.lost"  # IMTManagerSink::OnDisconnect / socket closed


@dataclass(frozen=True, slots=True)
class PlatformEvent:
    """One pushed event. ``data`` is the typed object (Deal, Position, PlatformUser…)."""

    kind: EventKind
    data: Deal | Position | PlatformUser | AccountState | None = None
    received_msc: int = field(default=0)


EventHandler = Callable[[PlatformEvent], None]


@runtime_checkable
class PlatformPort(Protocol):
    """Broker-side operations on one trading server (one manager connection).

    Implementations: :class:`~brokerdesk.trading.platform.simulator_adapter.SimulatorAdapter`,
    :class:`~brokerdesk.trading.platform.mt5_adapter.MT5Adapter`,
    :class:`~brokerdesk.trading.platform.mt4_adapter.MT4Adapter`.
    Every method raises :class:`PlatformError` (or a subclass) on failure; none returns a
    sentinel. Event handlers run on the adapter's network thread: they must only enqueue.
    """

    server_name: str

    def connect(self) -> None:
        """Open the manager connection (raises :class:`PlatformConnectionError`)."""
        ...

    def disconnect(self) -> None:
        """Close the connection; safe to call twice."""
        ...

    def is_connected(self) -> bool:
        """True while the link is up."""
        ...

    def create_user(self, new: NewUser) -> PlatformUser:
        """``UserAdd``: a new login in ``new.group`` with ``new.leverage``."""
        ...

    def get_user(self, login: int) -> PlatformUser:
        """``UserRequest``: the login as the server has it now."""
        ...

    def update_user(
        self,
        login: int,
        *,
        name: str | None = None,
        email: str | None = None,
        comment: str | None = None,
    ) -> PlatformUser:
        """``UserUpdate`` of descriptive fields."""
        ...

    def set_trading_enabled(self, login: int, enabled: bool) -> PlatformUser:
        """Clear or set ``USER_RIGHT_TRADE_DISABLED``."""
        ...

    def change_group(self, login: int, group: str) -> PlatformUser:
        """Move the login to another group."""
        ...

    def change_leverage(self, login: int, leverage: int) -> PlatformUser:
        """Change the login's leverage (1:N)."""
        ...

    def balance_operation(self, login: int, op: BalanceOp, amount: int, comment: str) -> int:
        """``DealerBalance``: move ``amount`` (> 0, minor units) and return the deal ticket.

        ``comment`` (≤ 31 characters) carries our transfer id. Raises :class:`NoMoney`,
        :class:`UnknownLogin`, or :class:`ConfirmationLost` when the answer never came.
        """
        ...

    def find_balance_deal(self, login: int, comment: str, since_msc: int) -> Deal | None:
        """The balance/credit deal with this comment since ``since_msc``, if the server has one."""
        ...

    def account_state(self, login: int) -> AccountState:
        """``UserAccountRequest``: balance, credit, equity, margin, free margin, margin level."""
        ...

    def deals(self, login: int, from_msc: int, to_msc: int) -> list[Deal]:
        """``DealRequest(login, from, to)``: the login's deals in the range, by ticket."""
        ...

    def deals_since(
        self, after_ticket: int, *, limit: int = 10_000, since_msc: int | None = None
    ) -> list[Deal]:
        """Every deal on the server with a ticket above ``after_ticket``, ascending, at most
        ``limit`` (the bridge's catch-up after a reconnect). ``since_msc`` bounds the search
        for platforms without a ticket index (MT5: ``DealRequestByGroup`` over a time range)."""
        ...

    def positions(self, login: int) -> list[Position]:
        """``PositionRequest(login)``: the login's open positions."""
        ...

    def open_positions(self) -> list[Position]:
        """Every open position on the server (MT5 ``PositionRequestByGroup(mask)``): the
        snapshot the bridge reconciles positions with after a reconnect."""
        ...

    def account_states(self, logins: list[int]) -> list[AccountState]:
        """``UserAccountRequestByLogins``: the accounts of ``logins`` (unknown logins are left
        out), for the bridge's resynchronisation after a reconnect."""
        ...

    def subscribe(self, handler: EventHandler) -> None:
        """Deliver deal, position, user and account events to ``handler``."""
        ...

    def unsubscribe(self, handler: EventHandler) -> None:
        """Stop delivering to ``handler``."""
        ...
