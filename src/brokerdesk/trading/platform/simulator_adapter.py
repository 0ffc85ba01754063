"""The platform port over the simulator's protocol (TCP, newline-delimited JSON).

A reader thread splits the stream into replies (matched to waiting calls by id) and pushed
events (converted at this edge and handed to the subscribed handlers).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import socket
import threading
import time
from typing import Any

import orjson

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
    NoMoney,
    PlatformConnectionError,
    PlatformError,
    PlatformEvent,
    PlatformUser,
    Position,
    Retcode,
    UnknownLogin,
    UserRights,
    check_comment,
    from_minor,
)

log = logging.getLogger(__name__)


def raise_for_retcode(retcode: int, message: str, *, login: int | None = None) -> None:
    """Raise the port error for an MT5 return code."""
    details: dict[str, Any] = {} if login is None else {"login": login}
    if retcode == Retcode.MT_RET_REQUEST_NO_MONEY:
        raise NoMoney(message, **details)
    if retcode == Retcode.MT_RET_ERR_NOTFOUND:
        raise UnknownLogin(message, **details)
    if retcode in (Retcode.MT_RET_ERR_CONNECTION, Retcode.MT_RET_ERR_NETWORK):
        raise PlatformConnectionError(message, **details)
    raise PlatformError(message, retcode=retcode, **details)


_EVENT_KINDS = {kind.value: kind for kind in EventKind}


class _Pending:
    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: dict[str, Any] | None = None


class SimulatorAdapter:
    """:class:`~brokerdesk.trading.platform.port.PlatformPort` for ``brokerdesk simulator mt5``."""

    def __init__(
        self,
        server_name: str,
        host: str = "127.0.0.1",
        port: int = 7001,
        *,
        password: str = "",
        timeout: float = 5.0,
        write_timeout: float | None = None,
        kinds: tuple[str, ...] = ("deal", "position", "user", "account"),
    ) -> None:
        self.server_name = server_name
        self.host = host
        self.port = port
        self.password = password
        self.timeout = timeout
        self.write_timeout = write_timeout if write_timeout is not None else timeout
        self.kinds = kinds  # event families to subscribe to
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._send_lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._handlers: list[EventHandler] = []
        self._connected = False
        self._digits: dict[int, int] = {}

    # --- link ------------------------------------------------------------------------------

    def connect(self) -> None:
        """Open the socket, say hello, and re-subscribe if handlers are registered."""
        self.disconnect()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise PlatformConnectionError(
                f"cannot reach simulator {self.host}:{self.port}: {exc}", server=self.server_name
            ) from exc
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._connected = True
        self._reader = threading.Thread(
            target=self._read_loop, args=(sock,), name=f"sim-reader-{self.server_name}", daemon=True
        )
        self._reader.start()
        self._call("hello", {"password": self.password})
        if self._handlers:
            self._call("subscribe", {"kinds": list(self.kinds)})

    def disconnect(self) -> None:
        """Close the socket; pending calls fail with a connection error."""
        sock, self._sock = self._sock, None
        self._connected = False
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=2)
        self._reader = None

    def is_connected(self) -> bool:
        """True while the socket is up."""
        return self._connected

    def _read_loop(self, sock: socket.socket) -> None:
        stream = sock.makefile("rb", buffering=1 << 20)
        try:
            for raw in stream:
                message = orjson.loads(raw)  # tens of thousands of events a second
                if "event" in message:
                    self._dispatch_event(
                        message["event"], message["data"], int(message.get("time_msc") or 0)
                    )
                else:
                    pending = self._pending.pop(int(message.get("id") or 0), None)
                    if pending is not None:
                        pending.reply = message
                        pending.done.set()
        except (OSError, ValueError):
            pass
        finally:
            was_current = self._sock is sock
            with contextlib.suppress(OSError):
                stream.close()
            if was_current:
                self._connected = False
            for pending in list(self._pending.values()):
                pending.done.set()
            if was_current:
                self._emit(PlatformEvent(EventKind.CONNECTION_LOST, None, _now_msc()))

    def _call(self, method: str, params: dict[str, Any], *, write: bool = False) -> Any:
        sock = self._sock
        if sock is None or not self._connected:
            raise PlatformConnectionError("not connected", server=self.server_name)
        rid = next(self._ids)
        pending = _Pending()
        self._pending[rid] = pending
        line = json.dumps({"id": rid, "method": method, "params": params}).encode() + b"\n"
        try:
            with self._send_lock:
                sock.sendall(line)
        except OSError as exc:
            self._pending.pop(rid, None)
            raise PlatformConnectionError(f"send failed: {exc}", server=self.server_name) from exc
        if (
            not pending.done.wait(self.write_timeout if write else self.timeout)
            or pending.reply is None
        ):
            self._pending.pop(rid, None)
            if write:
                raise ConfirmationLost(
                    f"no answer to {method} within {self.write_timeout}s; it may have been applied",
                    server=self.server_name,
                )
            if not self._connected:
                raise PlatformConnectionError("connection lost", server=self.server_name)
            raise PlatformError(f"{method} timed out", retcode=Retcode.MT_RET_ERR_TIMEOUT)
        reply = pending.reply
        if "error" in reply:
            err = reply["error"]
            raise_for_retcode(
                int(err.get("retcode", 2)), str(err.get("message", "")), login=params.get("login")
            )
        return reply.get("result")

    # --- events ----------------------------------------------------------------------------

    def subscribe(self, handler: EventHandler) -> None:
        """Deliver events to ``handler`` (subscribes on the wire at once if connected)."""
        first = not self._handlers
        self._handlers.append(handler)
        if first and self._connected:
            self._call("subscribe", {"kinds": list(self.kinds)})

    def unsubscribe(self, handler: EventHandler) -> None:
        """Stop delivering to ``handler``."""
        with contextlib.suppress(ValueError):
            self._handlers.remove(handler)

    def _emit(self, event: PlatformEvent) -> None:
        for handler in list(self._handlers):
            try:
                handler(event)
            except Exception:  # a handler must not kill the reader thread
                log.exception("platform event handler failed")

    def _dispatch_event(self, kind: str, data: dict[str, Any], server_msc: int = 0) -> None:
        ekind = _EVENT_KINDS.get(kind)  # not EventKind(kind): an enum call per event costs
        if ekind is None:
            return
        obj: Any
        if kind.startswith("deal."):
            obj = deal_from_mt5(data)
        elif kind.startswith("position."):
            obj = position_from_mt5(data, self._digits.get(int(data["Login"]), 2))
        elif kind.startswith("user."):
            obj = user_from_mt5(data, self._digits.get(int(data["Login"]), 2))
        elif kind.startswith("account."):
            obj = account_from_mt5(data)
        else:
            return
        self._emit(PlatformEvent(ekind, obj, server_msc or _now_msc()))

    # --- users -----------------------------------------------------------------------------

    def _currency_digits(self, login: int) -> int:
        if login not in self._digits:
            self._digits[login] = int(self._call("account_get", {"login": login})["CurrencyDigits"])
        return self._digits[login]

    def _user(self, wire: dict[str, Any]) -> PlatformUser:
        return user_from_mt5(wire, self._currency_digits(int(wire["Login"])))

    def create_user(self, new: NewUser) -> PlatformUser:
        """``user_add``."""
        rights = UserRights.USER_RIGHT_ENABLED | UserRights.USER_RIGHT_PASSWORD
        if not new.trade_enabled:
            rights |= UserRights.USER_RIGHT_TRADE_DISABLED
        wire = self._call(
            "user_add",
            {
                "Group": new.group,
                "Leverage": new.leverage,
                "Name": new.name,
                "EMail": new.email,
                "Login": new.login,
                "Rights": int(rights),
                "Comment": new.comment,
            },
            write=True,
        )
        return self._user(wire)

    def get_user(self, login: int) -> PlatformUser:
        """``user_get``."""
        return self._user(self._call("user_get", {"login": login}))

    def _update(self, login: int, **fields: Any) -> PlatformUser:
        return self._user(self._call("user_update", {"Login": login, **fields}, write=True))

    def update_user(
        self,
        login: int,
        *,
        name: str | None = None,
        email: str | None = None,
        comment: str | None = None,
    ) -> PlatformUser:
        """Descriptive fields."""
        fields = {
            k: v
            for k, v in (("Name", name), ("EMail", email), ("Comment", comment))
            if v is not None
        }
        return self._update(login, **fields)

    def set_trading_enabled(self, login: int, enabled: bool) -> PlatformUser:
        """Flip ``USER_RIGHT_TRADE_DISABLED``."""
        rights = self.get_user(login).rights
        if enabled:
            rights &= ~UserRights.USER_RIGHT_TRADE_DISABLED
        else:
            rights |= UserRights.USER_RIGHT_TRADE_DISABLED
        return self._update(login, Rights=int(rights))

    def change_group(self, login: int, group: str) -> PlatformUser:
        """Move the login to ``group``."""
        self._digits.pop(login, None)
        return self._update(login, Group=group)

    def change_leverage(self, login: int, leverage: int) -> PlatformUser:
        """Set the login's leverage."""
        return self._update(login, Leverage=leverage)

    # --- money -----------------------------------------------------------------------------

    def balance_operation(self, login: int, op: BalanceOp, amount: int, comment: str) -> int:
        """``dealer_balance``; returns the deal ticket."""
        if amount <= 0:
            raise PlatformError(
                "amount must be positive minor units", retcode=Retcode.MT_RET_ERR_PARAMS
            )
        check_comment(comment)
        value = from_minor(op.sign * amount, self._currency_digits(login))
        result = self._call(
            "dealer_balance",
            {
                "login": login,
                "value": value,
                "type": int(op.action),
                "comment": comment,
            },
            write=True,
        )
        return int(result["ticket"])

    def find_balance_deal(self, login: int, comment: str, since_msc: int) -> Deal | None:
        """The balance/credit deal with this comment, if the server recorded one."""
        for deal in self.deals(login, since_msc, _now_msc() + 60_000):
            if (
                deal.action in (DealAction.DEAL_BALANCE, DealAction.DEAL_CREDIT)
                and deal.comment == comment
            ):
                return deal
        return None

    def account_state(self, login: int) -> AccountState:
        """``account_get``."""
        state = account_from_mt5(self._call("account_get", {"login": login}))
        self._digits[login] = state.currency_digits
        return state

    def deals(self, login: int, from_msc: int, to_msc: int) -> list[Deal]:
        """``deal_request``."""
        result = self._call("deal_request", {"login": login, "from": from_msc, "to": to_msc})
        return [deal_from_mt5(d) for d in result["deals"]]

    def deals_since(
        self, after_ticket: int, *, limit: int = 10_000, since_msc: int | None = None
    ) -> list[Deal]:
        """``deal_request_since`` (the simulator keeps a ticket index)."""
        result = self._call("deal_request_since", {"after": after_ticket, "limit": limit})
        return [deal_from_mt5(d) for d in result["deals"]]

    def positions(self, login: int) -> list[Position]:
        """``position_request``."""
        digits = self._currency_digits(login)
        result = self._call("position_request", {"login": login})
        return [position_from_mt5(p, digits) for p in result["positions"]]

    def server_time_msc(self) -> int:
        """The server's clock (``ping``), milliseconds."""
        return int(self._call("ping", {})["time_msc"])

    def open_positions(self) -> list[Position]:
        """``position_request_all`` (``PositionRequestByGroup("*")``)."""
        result = self._call("position_request_all", {})
        return [
            position_from_mt5(p, self._digits.get(int(p["Login"]), 2)) for p in result["positions"]
        ]

    def account_states(self, logins: list[int]) -> list[AccountState]:
        """``account_request_by_logins`` (``UserAccountRequestByLogins``)."""
        if not logins:
            return []
        result = self._call("account_request_by_logins", {"logins": [int(x) for x in logins]})
        states = [account_from_mt5(a) for a in result["accounts"]]
        for state in states:
            self._digits[state.login] = state.currency_digits
        return states

    # --- simulator-only controls (tests and demos) ------------------------------------------

    def control(self, method: str, **params: Any) -> Any:
        """Call a simulator-only method (``trade_open``, ``set_price``, ``faults``, ``stats``…)."""
        return self._call(method, params)


def _now_msc() -> int:
    return time.time_ns() // 1_000_000
