"""The platform port over the MT4 Manager API's shape (``CManagerInterface``, mtmanapi.dll).

There is no official Python package for MT4; a broker reaches the DLL through a Windows sidecar
or a binding of its own. This adapter is written against a Python object that mirrors the C++
interface method for method (``Connect``, ``Login``, ``UserRecordNew``, ``TradeTransaction``,
``TradesUserHistory``, ``TradesGetByLogin``, ``MarginLevelRequest``, ``PumpingSwitchEx``…),
returning ``RET_*`` codes and lists instead of pointers. Pass that binding as ``module``: an
object with ``Manager()``, ``UserRecord()`` and ``TradeTransInfo()`` constructors.

MT4 has no deals. One ``TradeRecord`` per order is opened and later closed. The adapter maps:

* ``cmd`` OP_BALANCE (6) / OP_CREDIT (7) → a ``DEAL_BALANCE`` / ``DEAL_CREDIT`` deal, ticket =
  order, amount = ``profit``;
* a closed OP_BUY/OP_SELL record → one ``ENTRY_OUT`` deal (ticket = order, the closing side,
  volume times 100: MT4 volumes are 1/100 lot) carrying the trade's profit, commission and swap;
* an open OP_BUY/OP_SELL record → a position (its opening is not a money event in MT4).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from brokerdesk.trading.platform.port import (
    AccountState,
    BalanceOp,
    ConfirmationLost,
    Deal,
    DealAction,
    DealEntry,
    DealReason,
    EventHandler,
    EventKind,
    NewUser,
    NoMoney,
    PlatformConnectionError,
    PlatformError,
    PlatformEvent,
    PlatformUser,
    Position,
    PositionAction,
    Retcode,
    UnknownLogin,
    UserRights,
    check_comment,
    from_minor,
    to_minor,
    to_points,
)

log = logging.getLogger(__name__)

# MT4 Manager API constants (MT4ManagerAPI.h)
RET_OK = 0
RET_ERROR = 2
RET_INVALID_DATA = 3
RET_NO_CONNECT = 6
RET_TRADE_TIMEOUT = 128
RET_TRADE_NO_MONEY = 134
OP_BUY, OP_SELL, OP_BALANCE, OP_CREDIT = 0, 1, 6, 7
TT_BR_BALANCE = 83
PUMP_UPDATE_USERS = 3
PUMP_UPDATE_TRADES = 9
PUMP_STOP_PUMPING = 14
TRANS_ADD, TRANS_DELETE, TRANS_UPDATE = 0, 1, 2
MT4_VOLUME_TO_MT5 = 100  # 1/100 lot → 1/10,000 lot


def _now_s() -> int:
    return int(time.time())


class MT4Adapter:
    """:class:`~brokerdesk.trading.platform.port.PlatformPort` over an MT4 manager binding."""

    def __init__(
        self,
        server_name: str,
        address: str,
        manager_login: int,
        password: str,
        *,
        module: Any = None,
        currency_digits: int = 2,
        price_digits: int = 5,
        catchup_lookback_s: int = 24 * 3600,
    ) -> None:
        self.server_name = server_name
        self.address = address
        self.manager_login = manager_login
        self.password = password
        self.currency_digits = currency_digits
        self.price_digits = price_digits
        self.catchup_lookback_s = catchup_lookback_s
        self._module = module
        self._man: Any = None
        self._connected = False
        self._handlers: list[EventHandler] = []

    # --- link ------------------------------------------------------------------------------

    def _binding(self) -> Any:
        if self._module is None:
            raise PlatformConnectionError(
                "No MT4 manager binding configured (mtmanapi.dll is Windows-only; run the "
                "adapter in a sidecar and pass its binding as module=).",
                server=self.server_name,
            )
        return self._module

    def _check(self, ret: int, what: str, login: int | None = None) -> None:
        if ret == RET_OK:
            return
        text = f"{what}: {self._man.ErrorDescription(ret)} ({ret})"
        details: dict[str, Any] = {} if login is None else {"login": login}
        if ret == RET_TRADE_NO_MONEY:
            raise NoMoney(text, **details)
        if ret == RET_NO_CONNECT:
            raise PlatformConnectionError(text, **details)
        if ret == RET_TRADE_TIMEOUT:
            raise ConfirmationLost(text, **details)
        raise PlatformError(text, retcode=Retcode.MT_RET_ERROR, mt4_ret=ret, **details)

    def connect(self) -> None:
        """``Connect`` + ``Login``, then ``PumpingSwitchEx`` for trade and user updates."""
        binding = self._binding()
        self._man = binding.Manager()
        ret = self._man.Connect(self.address)
        if ret != RET_OK:
            raise PlatformConnectionError(
                f"Connect({self.address}) failed ({ret})", server=self.server_name
            )
        ret = self._man.Login(self.manager_login, self.password)
        if ret != RET_OK:
            self._man.Disconnect()
            raise PlatformConnectionError(f"Login failed ({ret})", server=self.server_name)
        self._connected = True
        self._check(self._man.PumpingSwitchEx(self._pump, 0, None), "PumpingSwitchEx")

    def disconnect(self) -> None:
        """``Disconnect``."""
        if self._man is not None and self._connected:
            self._connected = False
            with contextlib.suppress(Exception):
                self._man.Disconnect()

    def is_connected(self) -> bool:
        """True while connected."""
        return self._connected

    def _require(self) -> Any:
        if self._man is None or not self._connected:
            raise PlatformConnectionError("not connected", server=self.server_name)
        return self._man

    # --- mapping ---------------------------------------------------------------------------

    def _user(self, rec: Any) -> PlatformUser:
        rights = UserRights.USER_RIGHT_NONE
        if rec.enable:
            rights |= UserRights.USER_RIGHT_ENABLED
        if rec.enable_read_only:
            rights |= UserRights.USER_RIGHT_TRADE_DISABLED
        return PlatformUser(
            login=int(rec.login),
            group=str(rec.group),
            leverage=int(rec.leverage),
            rights=int(rights),
            name=str(rec.name),
            email=str(rec.email),
            comment=str(rec.comment),
            currency_digits=self.currency_digits,
        )

    def deal_from_record(self, rec: Any) -> Deal | None:
        """A balance/credit record or a closed trade as a deal; None for an open trade."""
        cd = self.currency_digits
        if rec.cmd in (OP_BALANCE, OP_CREDIT):
            return Deal(
                deal=int(rec.order),
                login=int(rec.login),
                action=DealAction.DEAL_BALANCE if rec.cmd == OP_BALANCE else DealAction.DEAL_CREDIT,
                entry=DealEntry.ENTRY_IN,
                time_msc=int(rec.open_time) * 1000,
                currency_digits=cd,
                profit=to_minor(rec.profit, cd),
                reason=DealReason.DEAL_REASON_DEALER,
                comment=str(rec.comment),
            )
        if rec.cmd in (OP_BUY, OP_SELL) and rec.close_time:
            digits = int(rec.digits)
            volume = int(rec.volume) * MT4_VOLUME_TO_MT5
            return Deal(
                deal=int(rec.order),
                login=int(rec.login),
                action=DealAction.DEAL_SELL if rec.cmd == OP_BUY else DealAction.DEAL_BUY,
                entry=DealEntry.ENTRY_OUT,
                time_msc=int(rec.close_time) * 1000,
                currency_digits=cd,
                profit=to_minor(rec.profit, cd),
                commission=to_minor(rec.commission, cd),
                storage=to_minor(rec.storage, cd),
                order=int(rec.order),
                position_id=int(rec.order),
                symbol=str(rec.symbol),
                volume=volume,
                volume_ext=volume * 10_000,
                volume_closed=volume,
                volume_closed_ext=volume * 10_000,
                price=to_points(rec.close_price, digits),
                digits=digits,
                comment=str(rec.comment),
            )
        return None

    def _position(self, rec: Any) -> Position:
        digits = int(rec.digits)
        volume = int(rec.volume) * MT4_VOLUME_TO_MT5
        cd = self.currency_digits
        return Position(
            position=int(rec.order),
            login=int(rec.login),
            symbol=str(rec.symbol),
            action=PositionAction(int(rec.cmd)),
            volume=volume,
            volume_ext=volume * 10_000,
            price_open=to_points(rec.open_price, digits),
            price_current=to_points(rec.close_price, digits),
            digits=digits,
            contract_size=0,
            profit=to_minor(rec.profit, cd),
            storage=to_minor(rec.storage, cd),
            currency_digits=cd,
            time_create_msc=int(rec.open_time) * 1000,
            time_update_msc=int(rec.timestamp) * 1000,
            comment=str(rec.comment),
        )

    # --- events ----------------------------------------------------------------------------

    def subscribe(self, handler: EventHandler) -> None:
        """Deliver pumped updates to ``handler``."""
        self._handlers.append(handler)

    def unsubscribe(self, handler: EventHandler) -> None:
        """Stop delivering to ``handler``."""
        with contextlib.suppress(ValueError):
            self._handlers.remove(handler)

    def _emit(self, event: PlatformEvent) -> None:
        for handler in list(self._handlers):
            try:
                handler(event)
            except Exception:
                log.exception("platform event handler failed")

    def _pump(self, code: int, trans_type: int, data: Any, param: Any) -> None:
        """The ``PumpingSwitchEx`` callback (network thread: convert and enqueue only)."""
        now = time.time_ns() // 1_000_000
        if code == PUMP_STOP_PUMPING:
            self._connected = False
            self._emit(PlatformEvent(EventKind.CONNECTION_LOST, None, now))
        elif code == PUMP_UPDATE_USERS and data is not None:
            kind = {TRANS_ADD: EventKind.USER_ADD, TRANS_DELETE: EventKind.USER_DELETE}.get(
                trans_type, EventKind.USER_UPDATE
            )
            self._emit(PlatformEvent(kind, self._user(data), now))
        elif code == PUMP_UPDATE_TRADES and data is not None:
            deal = self.deal_from_record(data)
            if deal is not None and data.cmd in (OP_BALANCE, OP_CREDIT) and trans_type != TRANS_ADD:
                # A balance/credit record is final when added: an update or a delete of it can
                # only be a dealer's correction. (A closed trade's TRANS_UPDATE is its close,
                # so trade corrections cannot be told apart on MT4.)
                kind = (
                    EventKind.DEAL_DELETE if trans_type == TRANS_DELETE else EventKind.DEAL_UPDATE
                )
                self._emit(PlatformEvent(kind, deal, now))
            elif deal is not None and trans_type != TRANS_DELETE:
                self._emit(PlatformEvent(EventKind.DEAL_ADD, deal, now))
                if data.cmd in (OP_BUY, OP_SELL):
                    self._emit(PlatformEvent(EventKind.POSITION_DELETE, self._position(data), now))
            elif data.cmd in (OP_BUY, OP_SELL):
                kind = {
                    TRANS_ADD: EventKind.POSITION_ADD,
                    TRANS_DELETE: EventKind.POSITION_DELETE,
                }.get(trans_type, EventKind.POSITION_UPDATE)
                self._emit(PlatformEvent(kind, self._position(data), now))

    # --- users -----------------------------------------------------------------------------

    def _record(self, login: int) -> Any:
        records = self._require().UserRecordsRequest([login])
        if not records:
            raise UnknownLogin(f"login {login} not found", login=login)
        return records[0]

    def create_user(self, new: NewUser) -> PlatformUser:
        """``UserRecordNew`` (``login=0`` lets the server allocate)."""
        man = self._require()
        rec = self._binding().UserRecord()
        rec.login = new.login
        rec.group = new.group
        rec.leverage = new.leverage
        rec.name = new.name
        rec.email = new.email
        rec.comment = new.comment
        rec.password = new.master_password
        rec.password_investor = new.investor_password
        rec.enable = 1
        rec.enable_read_only = 0 if new.trade_enabled else 1
        self._check(man.UserRecordNew(rec), "UserRecordNew")
        return self._user(rec)

    def get_user(self, login: int) -> PlatformUser:
        """``UserRecordsRequest``."""
        return self._user(self._record(login))

    def _update(self, login: int, **fields: Any) -> PlatformUser:
        rec = self._record(login)
        for name, value in fields.items():
            setattr(rec, name, value)
        self._check(self._require().UserRecordUpdate(rec), "UserRecordUpdate", login)
        return self._user(rec)

    def update_user(
        self,
        login: int,
        *,
        name: str | None = None,
        email: str | None = None,
        comment: str | None = None,
    ) -> PlatformUser:
        """``UserRecordUpdate`` of name, email, comment."""
        fields = {
            k: v
            for k, v in (("name", name), ("email", email), ("comment", comment))
            if v is not None
        }
        return self._update(login, **fields)

    def set_trading_enabled(self, login: int, enabled: bool) -> PlatformUser:
        """``enable_read_only`` off or on."""
        return self._update(login, enable_read_only=0 if enabled else 1)

    def change_group(self, login: int, group: str) -> PlatformUser:
        """``UserRecordUpdate`` of group."""
        return self._update(login, group=group)

    def change_leverage(self, login: int, leverage: int) -> PlatformUser:
        """``UserRecordUpdate`` of leverage."""
        return self._update(login, leverage=leverage)

    # --- money -----------------------------------------------------------------------------

    def balance_operation(self, login: int, op: BalanceOp, amount: int, comment: str) -> int:
        """``TradeTransaction`` TT_BR_BALANCE; the new order ticket is written back to ``order``."""
        if amount <= 0:
            raise PlatformError(
                "amount must be positive minor units", retcode=Retcode.MT_RET_ERR_PARAMS
            )
        check_comment(comment)
        man = self._require()
        info = self._binding().TradeTransInfo()
        info.type = TT_BR_BALANCE
        info.cmd = OP_BALANCE if op.action == DealAction.DEAL_BALANCE else OP_CREDIT
        info.orderby = login
        info.price = from_minor(op.sign * amount, self.currency_digits)
        info.comment = comment
        started = _now_s()
        self._check(man.TradeTransaction(info), "TradeTransaction", login)
        if info.order:
            return int(info.order)
        found = self.find_balance_deal(login, comment, started * 1000)
        if found is None:
            raise ConfirmationLost("TradeTransaction returned no ticket", login=login)
        return found.deal

    def find_balance_deal(self, login: int, comment: str, since_msc: int) -> Deal | None:
        """A balance/credit record with this comment in the login's history."""
        for deal in self.deals(login, since_msc, (_now_s() + 60) * 1000):
            if (
                deal.action in (DealAction.DEAL_BALANCE, DealAction.DEAL_CREDIT)
                and deal.comment == comment
            ):
                return deal
        return None

    def account_state(self, login: int) -> AccountState:
        """``MarginLevelRequest`` (balance, equity, margin…) + the user record (credit)."""
        ret, level = self._require().MarginLevelRequest(login)
        if ret != RET_OK:
            self._check(ret, f"MarginLevelRequest({login})", login)
        rec = self._record(login)
        cd = self.currency_digits
        balance = to_minor(level.balance, cd)
        equity = to_minor(level.equity, cd)
        return AccountState(
            login=login,
            currency_digits=cd,
            balance=balance,
            credit=to_minor(rec.credit, cd),
            equity=equity,
            margin=to_minor(level.margin, cd),
            margin_free=to_minor(level.margin_free, cd),
            margin_level=to_minor(level.margin_level, 2),
            profit=equity - balance - to_minor(rec.credit, cd),
        )

    def deals(self, login: int, from_msc: int, to_msc: int) -> list[Deal]:
        """``TradesUserHistory(login, from, to)`` mapped to deals."""
        records = self._require().TradesUserHistory(login, from_msc // 1000, to_msc // 1000)
        deals = [d for d in (self.deal_from_record(r) for r in records) if d is not None]
        return sorted((d for d in deals if from_msc <= d.time_msc <= to_msc), key=lambda d: d.deal)

    def deals_since(
        self, after_ticket: int, *, limit: int = 10_000, since_msc: int | None = None
    ) -> list[Deal]:
        """Every login's deals since ``since_msc`` (or a lookback) above ``after_ticket``.

        MT4 keeps one ticket per order, numbered at opening: a close of an old order has a
        ticket below newer ones. With ``since_msc`` every deal closed since then is returned,
        whatever its ticket (and ``limit`` does not apply); consumers dedupe.
        """
        man = self._require()
        now = _now_s()
        start = since_msc // 1000 if since_msc is not None else now - self.catchup_lookback_s
        deals: list[Deal] = []
        for user in man.UsersRequest():
            for rec in man.TradesUserHistory(int(user.login), start, now + 60):
                deal = self.deal_from_record(rec)
                if deal is not None and (deal.deal > after_ticket or since_msc is not None):
                    deals.append(deal)
        deals.sort(key=lambda d: d.deal)
        return deals if since_msc is not None else deals[:limit]

    def positions(self, login: int) -> list[Position]:
        """``TradesGetByLogin``: open OP_BUY/OP_SELL records."""
        rec = self._record(login)
        records = self._require().TradesGetByLogin(login, rec.group)
        return [
            self._position(r) for r in records if r.cmd in (OP_BUY, OP_SELL) and not r.close_time
        ]

    def open_positions(self) -> list[Position]:
        """Every login's open OP_BUY/OP_SELL records (``UsersRequest`` + ``TradesGetByLogin``)."""
        man = self._require()
        found: list[Position] = []
        for user in man.UsersRequest():
            for r in man.TradesGetByLogin(int(user.login), user.group):
                if r.cmd in (OP_BUY, OP_SELL) and not r.close_time:
                    found.append(self._position(r))
        return found

    def account_states(self, logins: list[int]) -> list[AccountState]:
        """``MarginLevelRequest`` per login (MT4 has no batch request); unknown logins skipped."""
        states: list[AccountState] = []
        for login in logins:
            try:
                states.append(self.account_state(int(login)))
            except UnknownLogin:
                continue
            except PlatformError as exc:
                if exc.details.get("mt4_ret") == RET_INVALID_DATA:  # no such login
                    continue
                raise
        return states
