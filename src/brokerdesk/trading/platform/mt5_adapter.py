"""The platform port over MetaQuotes' ``MT5Manager`` Python package (Manager API).

``MT5Manager`` ships only as a Windows wheel (it wraps ``MT5APIManager64.dll``), so it is
imported inside :meth:`MT5Adapter.connect`, never at module import; on Linux the adapter runs
in a Windows sidecar. Tests inject a fake module with the same interface (``module=``).

What the package does, and this adapter relies on: methods never raise, they return ``False``
(or ``None``) and ``MT5Manager.LastError()`` returns ``(code, EnMTAPIRetcode, text)``; data
objects are created with the manager (``MT5Manager.MTUser(manager)``); sinks are duck-typed
objects subscribed before ``Connect`` and called on the API's network thread, where only local
calls are allowed — ours only convert and enqueue.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import time
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

from brokerdesk.trading.platform.mt5_fields import (
    account_from_mt5,
    deal_from_mt5,
    position_from_mt5,
    user_from_mt5,
)
from brokerdesk.trading.platform.port import (
    AccountState,
    BalanceOp,
    ConfirmationLost,
    Deal,
    DealAction,
    EventHandler,
    EventKind,
    NewUser,
    PlatformConnectionError,
    PlatformError,
    PlatformEvent,
    PlatformUser,
    Position,
    Retcode,
    UserRights,
    check_comment,
    from_minor,
)
from brokerdesk.trading.platform.simulator_adapter import raise_for_retcode

log = logging.getLogger(__name__)


def _now_msc() -> int:
    return time.time_ns() // 1_000_000


def _dt(msc: int) -> datetime:
    return datetime.fromtimestamp(msc / 1000, tz=UTC)


class _Sink:
    """One object implementing the deal, position, user and manager sink methods."""

    def __init__(self, adapter: MT5Adapter) -> None:
        self.adapter = adapter
        self.last_correction_msc = 0

    def _deal(self, kind: EventKind, deal: Any) -> None:
        stamp = _now_msc()
        if kind != EventKind.DEAL_ADD:
            # IMTDeal has no modification time: a correction is ordered by when its callback
            # ran, made strictly increasing so two corrections in one millisecond keep order.
            stamp = max(stamp, self.last_correction_msc + 1)
            self.last_correction_msc = stamp
        self.adapter._emit(PlatformEvent(kind, deal_from_mt5(deal), stamp))

    def OnDealAdd(self, deal: Any) -> None:
        """IMTDealSink::OnDealAdd."""
        self._deal(EventKind.DEAL_ADD, deal)

    def OnDealUpdate(self, deal: Any) -> None:
        """IMTDealSink::OnDealUpdate."""
        self._deal(EventKind.DEAL_UPDATE, deal)

    def OnDealDelete(self, deal: Any) -> None:
        """IMTDealSink::OnDealDelete."""
        self._deal(EventKind.DEAL_DELETE, deal)

    def _position(self, kind: EventKind, position: Any) -> None:
        digits = self.adapter._digits.get(int(position.Login), self.adapter.default_currency_digits)
        self.adapter._emit(PlatformEvent(kind, position_from_mt5(position, digits), _now_msc()))

    def OnPositionAdd(self, position: Any) -> None:
        """IMTPositionSink::OnPositionAdd."""
        self._position(EventKind.POSITION_ADD, position)

    def OnPositionUpdate(self, position: Any) -> None:
        """IMTPositionSink::OnPositionUpdate."""
        self._position(EventKind.POSITION_UPDATE, position)

    def OnPositionDelete(self, position: Any) -> None:
        """IMTPositionSink::OnPositionDelete."""
        self._position(EventKind.POSITION_DELETE, position)

    def _user(self, kind: EventKind, user: Any) -> None:
        digits = self.adapter._digits.get(int(user.Login), self.adapter.default_currency_digits)
        self.adapter._emit(PlatformEvent(kind, user_from_mt5(user, digits), _now_msc()))

    def OnUserAdd(self, user: Any) -> None:
        """IMTUserSink::OnUserAdd."""
        self._user(EventKind.USER_ADD, user)

    def OnUserUpdate(self, user: Any) -> None:
        """IMTUserSink::OnUserUpdate, then the account from the pumped cache.

        The user record holds Balance and Credit; equity and margin live in ``IMTAccount``,
        which MT5 pushes only on margin-call / stop-out transitions (``IMTAccountSink``). So on
        a user update the adapter also reads ``UserAccountGet(login)`` — a local-cache call,
        allowed inside a sink — and pushes it as ``account.update``.
        """
        self._user(EventKind.USER_UPDATE, user)
        api = self.adapter._api
        get = getattr(api, "UserAccountGet", None) if api is not None else None
        if get is None:
            return
        account = get(int(user.Login))
        if account is not False and account is not None:
            self._account(EventKind.ACCOUNT_UPDATE, account)

    def OnUserDelete(self, user: Any) -> None:
        """IMTUserSink::OnUserDelete."""
        self._user(EventKind.USER_DELETE, user)

    def _account(self, kind: EventKind, account: Any) -> None:
        state = account_from_mt5(account)
        self.adapter._digits[state.login] = state.currency_digits
        self.adapter._emit(PlatformEvent(kind, state, _now_msc()))

    def OnAccountMarginCallEnter(self, account: Any, group: Any = None) -> None:
        """IMTAccountSink::OnAccountMarginCallEnter(account, group)."""
        self._account(EventKind.ACCOUNT_MARGIN_CALL, account)

    def OnAccountMarginCallLeave(self, account: Any, group: Any = None) -> None:
        """IMTAccountSink::OnAccountMarginCallLeave(account, group)."""
        self._account(EventKind.ACCOUNT_MARGIN_CALL_LEAVE, account)

    def OnAccountStopOutEnter(self, account: Any, group: Any = None) -> None:
        """IMTAccountSink::OnAccountStopOutEnter(account, group)."""
        self._account(EventKind.ACCOUNT_STOP_OUT, account)

    def OnAccountStopOutLeave(self, account: Any, group: Any = None) -> None:
        """IMTAccountSink::OnAccountStopOutLeave(account, group)."""
        self._account(EventKind.ACCOUNT_STOP_OUT_LEAVE, account)

    def OnDisconnect(self) -> None:
        """IMTManagerSink::OnDisconnect."""
        self.adapter._connected = False
        self.adapter._emit(PlatformEvent(EventKind.CONNECTION_LOST, None, _now_msc()))


class MT5Adapter:
    """:class:`~brokerdesk.trading.platform.port.PlatformPort` over ``MT5Manager.ManagerAPI``."""

    def __init__(
        self,
        server_name: str,
        address: str,
        manager_login: int,
        password: str,
        *,
        module: ModuleType | Any | None = None,
        timeout_ms: int = 30_000,
        default_currency_digits: int = 2,
        catchup_lookback_ms: int = 24 * 3600 * 1000,
        group_mask: str = "*",
    ) -> None:
        self.server_name = server_name
        self.address = address
        self.manager_login = manager_login
        self.password = password
        self.timeout_ms = timeout_ms
        self.default_currency_digits = default_currency_digits
        self.catchup_lookback_ms = catchup_lookback_ms
        self.group_mask = group_mask
        self._module = module
        self._api: Any = None
        self._connected = False
        self._handlers: list[EventHandler] = []
        self._sink = _Sink(self)
        self._digits: dict[int, int] = {}

    # --- link ------------------------------------------------------------------------------

    @property
    def mt5(self) -> Any:
        """The ``MT5Manager`` module (imported on first use: Windows only)."""
        if self._module is None:
            try:
                self._module = importlib.import_module("MT5Manager")
            except ImportError as exc:
                raise PlatformConnectionError(
                    "The MT5Manager package is not installed (it exists for Windows only); "
                    "run this adapter in a Windows sidecar.",
                    server=self.server_name,
                ) from exc
        return self._module

    def _fail(self, what: str, login: int | None = None) -> None:
        """Raise the port error for ``MT5Manager.LastError()``."""
        _code, retcode, text = self.mt5.LastError()
        raise_for_retcode(int(retcode), f"{what}: {text}", login=login)

    def connect(self) -> None:
        """Subscribe the sinks, then ``Connect`` with users, orders and positions pumped."""
        mt5 = self.mt5
        if self._api is None:
            self._api = mt5.ManagerAPI()
            api = self._api
            # IMTManagerAPI::Subscribe takes the manager sink (OnDisconnect); the others are
            # the documented DealSubscribe / PositionSubscribe / UserSubscribe and
            # UserAccountSubscribe (IMTAccountSink: margin-call and stop-out enter/leave).
            for name in (
                "Subscribe",
                "DealSubscribe",
                "PositionSubscribe",
                "UserSubscribe",
                "UserAccountSubscribe",
            ):
                subscribe = getattr(api, name, None)
                if subscribe is None and name in ("Subscribe", "UserAccountSubscribe"):
                    log.warning("ManagerAPI.%s missing: its events will not arrive", name)
                    continue
                if subscribe is None or not subscribe(self._sink):
                    self._fail(f"{name} failed")
        modes = mt5.ManagerAPI.EnPumpModes
        pump = modes.PUMP_MODE_USERS | modes.PUMP_MODE_ORDERS | modes.PUMP_MODE_POSITIONS
        if not self._api.Connect(
            self.address, self.manager_login, self.password, pump, self.timeout_ms
        ):
            _code, retcode, text = mt5.LastError()
            raise PlatformConnectionError(
                f"Connect to {self.address} failed: {text} ({int(retcode)})",
                server=self.server_name,
            )
        self._connected = True

    def disconnect(self) -> None:
        """``Disconnect`` (the sinks stay subscribed for the next connect)."""
        if self._api is not None and self._connected:
            self._connected = False
            with contextlib.suppress(Exception):
                self._api.Disconnect()

    def is_connected(self) -> bool:
        """True between connect and a disconnect (ours or ``OnDisconnect``)."""
        return self._connected

    def _require(self) -> Any:
        if self._api is None or not self._connected:
            raise PlatformConnectionError("not connected", server=self.server_name)
        return self._api

    # --- events ----------------------------------------------------------------------------

    def subscribe(self, handler: EventHandler) -> None:
        """Deliver sink callbacks to ``handler``."""
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

    # --- users -----------------------------------------------------------------------------

    def _currency_digits(self, login: int) -> int:
        if login not in self._digits:
            self.account_state(login)
        return self._digits[login]

    def _request_user(self, login: int) -> Any:
        user = self._require().UserRequest(login)
        if user is False or user is None:
            self._fail(f"UserRequest({login})", login)
        return user

    def create_user(self, new: NewUser) -> PlatformUser:
        """``UserAdd``; the server writes the allocated ``Login`` back into the object."""
        api = self._require()
        rights_enum = self.mt5.MTUser.EnUsersRights
        user = self.mt5.MTUser(api)
        user.Login = new.login
        user.Group = new.group
        user.Leverage = new.leverage
        user.Name = new.name
        user.EMail = new.email
        user.Comment = new.comment
        rights = rights_enum.USER_RIGHT_ENABLED | rights_enum.USER_RIGHT_PASSWORD
        if not new.trade_enabled:
            rights |= rights_enum.USER_RIGHT_TRADE_DISABLED
        user.Rights = rights
        if not api.UserAdd(user, new.master_password, new.investor_password):
            self._fail("UserAdd")
        return user_from_mt5(user, self._currency_digits(int(user.Login)))

    def get_user(self, login: int) -> PlatformUser:
        """``UserRequest``."""
        return user_from_mt5(self._request_user(login), self._currency_digits(login))

    def _update(self, login: int, **fields: Any) -> PlatformUser:
        api = self._require()
        user = self._request_user(login)
        for name, value in fields.items():
            setattr(user, name, value)
        if not api.UserUpdate(user):
            self._fail(f"UserUpdate({login})", login)
        if "Group" in fields:
            self._digits.pop(login, None)
        return user_from_mt5(user, self._currency_digits(login))

    def update_user(
        self,
        login: int,
        *,
        name: str | None = None,
        email: str | None = None,
        comment: str | None = None,
    ) -> PlatformUser:
        """``UserUpdate`` of Name, EMail, Comment."""
        fields = {
            k: v
            for k, v in (("Name", name), ("EMail", email), ("Comment", comment))
            if v is not None
        }
        return self._update(login, **fields)

    def set_trading_enabled(self, login: int, enabled: bool) -> PlatformUser:
        """``USER_RIGHT_TRADE_DISABLED`` off or on."""
        rights = int(self._request_user(login).Rights)
        if enabled:
            rights &= ~int(UserRights.USER_RIGHT_TRADE_DISABLED)
        else:
            rights |= int(UserRights.USER_RIGHT_TRADE_DISABLED)
        return self._update(login, Rights=rights)

    def change_group(self, login: int, group: str) -> PlatformUser:
        """``UserUpdate`` of Group."""
        return self._update(login, Group=group)

    def change_leverage(self, login: int, leverage: int) -> PlatformUser:
        """``UserUpdate`` of Leverage."""
        return self._update(login, Leverage=leverage)

    # --- money -----------------------------------------------------------------------------

    def balance_operation(self, login: int, op: BalanceOp, amount: int, comment: str) -> int:
        """``DealerBalance(login, value, type, comment)`` → deal ticket.

        ``DealerBalance`` is not atomic: on a timeout the deal may exist. That surfaces as
        :class:`ConfirmationLost`; the caller looks the deal up by comment before retrying.
        """
        if amount <= 0:
            raise PlatformError(
                "amount must be positive minor units", retcode=Retcode.MT_RET_ERR_PARAMS
            )
        check_comment(comment)
        api = self._require()
        value = from_minor(op.sign * amount, self._currency_digits(login))
        actions = self.mt5.MTDeal.EnDealAction
        action = (
            actions.DEAL_BALANCE if op.action == DealAction.DEAL_BALANCE else actions.DEAL_CREDIT
        )
        ticket = api.DealerBalance(login, value, action, comment)
        if ticket is False or ticket is None:
            _code, retcode, text = self.mt5.LastError()
            if int(retcode) in (Retcode.MT_RET_ERR_TIMEOUT, Retcode.MT_RET_ERR_NETWORK):
                raise ConfirmationLost(f"DealerBalance({login}): {text}", login=login)
            raise_for_retcode(int(retcode), f"DealerBalance({login}): {text}", login=login)
        return int(ticket)

    def find_balance_deal(self, login: int, comment: str, since_msc: int) -> Deal | None:
        """``DealRequest`` over the range, matched on action and comment."""
        for deal in self.deals(login, since_msc, _now_msc() + 60_000):
            if (
                deal.action in (DealAction.DEAL_BALANCE, DealAction.DEAL_CREDIT)
                and deal.comment == comment
            ):
                return deal
        return None

    def account_state(self, login: int) -> AccountState:
        """``UserAccountRequest``."""
        account = self._require().UserAccountRequest(login)
        if account is False or account is None:
            self._fail(f"UserAccountRequest({login})", login)
        state = account_from_mt5(account)
        self._digits[login] = state.currency_digits
        return state

    def _rows(self, result: Any, what: str, login: int | None = None) -> list[Any]:
        """A request's records; a failed request that only found nothing is an empty list."""
        if result is False or result is None:
            _code, retcode, text = self.mt5.LastError()
            if int(retcode) in (
                Retcode.MT_RET_OK,
                Retcode.MT_RET_OK_NONE,
                Retcode.MT_RET_ERR_NOTFOUND,
            ):
                return []
            raise_for_retcode(int(retcode), f"{what}: {text}", login=login)
        return list(result)

    def _deal_list(self, result: Any, what: str) -> list[Deal]:
        return sorted((deal_from_mt5(d) for d in self._rows(result, what)), key=lambda d: d.deal)

    def deals(self, login: int, from_msc: int, to_msc: int) -> list[Deal]:
        """``DealRequest(login, from, to)``."""
        api = self._require()
        return self._deal_list(
            api.DealRequest(login, _dt(from_msc), _dt(to_msc)), f"DealRequest({login})"
        )

    def deals_since(
        self, after_ticket: int, *, limit: int = 10_000, since_msc: int | None = None
    ) -> list[Deal]:
        """``DealRequestByGroup(mask, from, now)`` filtered to tickets above ``after_ticket``.

        The Manager API has no "deals after ticket N" request; the time range comes from
        ``since_msc`` (the bridge passes its checkpoint time minus an overlap) or a lookback.
        """
        api = self._require()
        now = _now_msc()
        start = since_msc if since_msc is not None else now - self.catchup_lookback_ms
        result = api.DealRequestByGroup(self.group_mask, _dt(start), _dt(now + 60_000))
        deals = [d for d in self._deal_list(result, "DealRequestByGroup") if d.deal > after_ticket]
        return deals[:limit]

    def positions(self, login: int) -> list[Position]:
        """``PositionRequest(login)``."""
        api = self._require()
        digits = self._currency_digits(login)
        result = self._rows(api.PositionRequest(login), f"PositionRequest({login})", login)
        return [position_from_mt5(p, digits) for p in result]

    def server_time_msc(self) -> int:
        """``TimeServer()``: the trade server's time (computed locally) in seconds, as the last
        millisecond of that second (a position created in it counts as older)."""
        return int(self._require().TimeServer()) * 1000 + 999

    def open_positions(self) -> list[Position]:
        """``PositionRequestByGroup(mask)``: every open position in the manager's groups."""
        api = self._require()
        result = self._rows(api.PositionRequestByGroup(self.group_mask), "PositionRequestByGroup")
        return [
            position_from_mt5(p, self._digits.get(int(p.Login), self.default_currency_digits))
            for p in result
        ]

    def account_states(self, logins: list[int]) -> list[AccountState]:
        """``UserAccountRequestByLogins(logins)`` (logins unknown to the server are left out)."""
        if not logins:
            return []
        api = self._require()
        result = self._rows(
            api.UserAccountRequestByLogins([int(x) for x in logins]), "UserAccountRequestByLogins"
        )
        states = [account_from_mt5(a) for a in result]
        for state in states:
            self._digits[state.login] = state.currency_digits
        return states
