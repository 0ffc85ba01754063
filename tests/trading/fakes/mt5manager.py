"""A fake of the ``MT5Manager`` package: just the subset ``MT5Adapter`` uses.

Names, signatures and conventions follow MetaQuotes' Python documentation: methods return
``False`` on failure and ``LastError()`` returns ``(code, EnMTAPIRetcode, text)``; enums are
``IntFlag`` classes nested in their owners; objects are created with a manager; sinks are
duck-typed and subscribed before ``Connect``. Behind it runs the simulator's engine, registered
by address in ``SERVERS``.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from brokerdesk.trading.platform.port import DealAction, Retcode, UserRights
from brokerdesk.trading.simulator.engine import Engine, EngineError

SERVERS: dict[str, Engine] = {}
_last_error: tuple[int, Any, str] = (0, 0, "Done")

EnMTAPIRetcode = enum.IntFlag("EnMTAPIRetcode", {m.name: m.value for m in Retcode})


def LastError() -> tuple[int, Any, str]:
    """The last error of this thread (here: of the process)."""
    return _last_error


def _fail(retcode: int, text: str) -> bool:
    global _last_error
    _last_error = (
        -1,
        EnMTAPIRetcode(retcode) if retcode in EnMTAPIRetcode._value2member_map_ else retcode,
        text,
    )
    return False


class _Record:
    """A data object: attributes named like the MT5 interface methods."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self.__dict__.update(data or {})

    def Print(self) -> str:
        return repr(self.__dict__)


class MTUser(_Record):
    """``MT5Manager.MTUser``."""

    EnUsersRights = enum.IntFlag("EnUsersRights", {m.name: m.value for m in UserRights if m.value})

    def __init__(self, manager: Any = None, data: dict[str, Any] | None = None) -> None:
        if manager is None:
            raise TypeError("MTUser needs a manager")
        super().__init__(
            {
                "Login": 0,
                "Group": "",
                "Leverage": 0,
                "Rights": 0,
                "Name": "",
                "EMail": "",
                "Comment": "",
                "Balance": 0.0,
                "Credit": 0.0,
                **(data or {}),
            }
        )


class MTDeal(_Record):
    """``MT5Manager.MTDeal``."""

    EnDealAction = enum.IntFlag("EnDealAction", {m.name: m.value for m in DealAction if m.value})


class MTPosition(_Record):
    """``MT5Manager.MTPosition``."""


class MTAccount(_Record):
    """``MT5Manager.MTAccount``."""


def _msc(value: datetime | int) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value) * 1000


class ManagerAPI:
    """``MT5Manager.ManagerAPI`` over a simulator engine."""

    EnPumpModes = enum.IntFlag(
        "EnPumpModes",
        {
            "PUMP_MODE_USERS": 0x1,
            "PUMP_MODE_ACTIVITY": 0x2,
            "PUMP_MODE_MAIL": 0x4,
            "PUMP_MODE_ORDERS": 0x8,
            "PUMP_MODE_NEWS": 0x20,
            "PUMP_MODE_POSITIONS": 0x80,
            "PUMP_MODE_GROUPS": 0x100,
            "PUMP_MODE_SYMBOLS": 0x200,
        },
    )

    def __init__(self, data_path: str | None = None) -> None:
        self.engine: Engine | None = None
        self.sinks: dict[str, list[Any]] = {
            "manager": [],
            "deal": [],
            "position": [],
            "user": [],
            "account": [],
        }
        self.calls: list[str] = []

    # sinks
    def _add(self, kind: str, sink: Any, methods: tuple[str, ...]) -> bool:
        if not any(hasattr(sink, m) for m in methods):
            return _fail(Retcode.MT_RET_ERR_PARAMS, "sink implements no method")
        self.sinks[kind].append(sink)
        return True

    def Subscribe(self, sink: Any) -> bool:
        return self._add("manager", sink, ("OnConnect", "OnDisconnect"))

    def DealSubscribe(self, sink: Any) -> bool:
        return self._add("deal", sink, ("OnDealAdd", "OnDealUpdate", "OnDealDelete"))

    def PositionSubscribe(self, sink: Any) -> bool:
        return self._add(
            "position", sink, ("OnPositionAdd", "OnPositionUpdate", "OnPositionDelete")
        )

    def UserSubscribe(self, sink: Any) -> bool:
        return self._add("user", sink, ("OnUserAdd", "OnUserUpdate", "OnUserDelete"))

    def UserAccountSubscribe(self, sink: Any) -> bool:
        return self._add(
            "account",
            sink,
            (
                "OnAccountMarginCallEnter",
                "OnAccountMarginCallLeave",
                "OnAccountStopOutEnter",
                "OnAccountStopOutLeave",
            ),
        )

    _ACCOUNT_CALLBACKS = {
        "account.margin_call": "OnAccountMarginCallEnter",
        "account.margin_call_leave": "OnAccountMarginCallLeave",
        "account.stop_out": "OnAccountStopOutEnter",
        "account.stop_out_leave": "OnAccountStopOutLeave",
    }

    def _on_engine(self, kind: str, data: dict[str, Any]) -> None:
        family, _, what = kind.partition(".")
        if family == "account":
            callback = self._ACCOUNT_CALLBACKS.get(kind)
            group = _Record({"Group": ""})
            for sink in self.sinks["account"]:
                if callback and hasattr(sink, callback):
                    getattr(sink, callback)(MTAccount(dict(data)), group)
            return
        if family not in ("deal", "position", "user"):
            return
        obj = {"deal": MTDeal, "position": MTPosition, "user": _Record}[family](dict(data))
        method = f"On{family.capitalize()}{what.capitalize()}"
        for sink in self.sinks[family]:
            if hasattr(sink, method):
                getattr(sink, method)(obj)

    # link
    def Connect(
        self, server: str, login: int, password: str, pump_mode: int = 0, timeout: int = 0
    ) -> bool:
        engine = SERVERS.get(server)
        if engine is None:
            return _fail(Retcode.MT_RET_ERR_NETWORK, "Network error")
        self.engine = engine
        engine.listeners.append(self._on_engine)
        return True

    def Disconnect(self) -> None:
        if self.engine is not None and self._on_engine in self.engine.listeners:
            self.engine.listeners.remove(self._on_engine)
        self.engine = None

    def drop(self) -> None:
        """Test hook: the server goes away (OnDisconnect on the network thread)."""
        self.Disconnect()
        for sink in self.sinks["manager"]:
            if hasattr(sink, "OnDisconnect"):
                sink.OnDisconnect()

    def _run(self, name: str, fn: Any, *args: Any) -> Any:
        self.calls.append(name)
        if self.engine is None:
            return _fail(Retcode.MT_RET_ERR_CONNECTION, "Not connected")
        try:
            return fn(*args)
        except EngineError as exc:
            return _fail(exc.retcode, exc.message)

    # users
    def UserAdd(self, user: MTUser, master_password: str, investor_password: str) -> bool:
        def add() -> bool:
            assert self.engine is not None
            wire = self.engine.user_add(
                user.Group,
                int(user.Leverage),
                user.Name,
                login=int(user.Login),
                email=user.EMail,
                rights=int(user.Rights),
                comment=user.Comment,
            )
            user.Login = wire["Login"]
            return True

        return bool(self._run("UserAdd", add))

    def UserRequest(self, login: int) -> Any:
        def get() -> Any:
            assert self.engine is not None
            return MTUser(self, self.engine.user_get(login))

        return self._run("UserRequest", get)

    def UserUpdate(self, user: MTUser) -> bool:
        def update() -> bool:
            assert self.engine is not None
            self.engine.user_update(
                int(user.Login),
                Group=user.Group,
                Leverage=user.Leverage,
                Rights=int(user.Rights),
                Name=user.Name,
                EMail=user.EMail,
                Comment=user.Comment,
            )
            return True

        return bool(self._run("UserUpdate", update))

    def UserAccountGet(self, login: int) -> Any:
        """The pumped cache (here: the engine itself)."""
        if self.engine is None or login not in self.engine.users:
            return _fail(Retcode.MT_RET_ERR_NOTFOUND, "Not found")
        return MTAccount(self.engine.account(login))

    def UserAccountRequestByLogins(self, logins: list[int]) -> Any:
        return self._run(
            "UserAccountRequestByLogins",
            lambda: [MTAccount(a) for a in self.engine.accounts_of(list(logins))],  # type: ignore[union-attr]
        )

    def UserAccountRequest(self, login: int) -> Any:
        return self._run("UserAccountRequest", lambda: MTAccount(self.engine.account(login)))  # type: ignore[union-attr]

    # money and history
    def DealerBalance(self, login: int, value: float, action: int, comment: str) -> Any:
        def balance() -> int:
            assert self.engine is not None
            user = self.engine.users.get(login)
            digits = self.engine.groups[user.group].currency_digits if user else 2
            return int(
                self.engine.dealer_balance(login, round(value * 10**digits), int(action), comment)[
                    "Deal"
                ]
            )

        return self._run("DealerBalance", balance)

    def DealRequest(
        self, login: int, from_: datetime | int | None = None, to: datetime | int | None = None
    ) -> Any:
        if from_ is None or to is None:  # DealRequest(ticket)
            ticket = login

            def one() -> MTDeal:
                assert self.engine is not None
                return MTDeal(self.engine.deal_at(self.engine._deal_index(ticket)))

            return self._run("DealRequest", one)
        return self._run(
            "DealRequest",
            lambda: [
                MTDeal(dict(d))
                for d in self.engine.deals_of(login, _msc(from_), _msc(to))  # type: ignore[union-attr, arg-type]
            ],
        )

    def DealUpdate(self, deal: MTDeal) -> bool:
        """A dealer's correction: the changed correctable fields of ``deal`` are written."""

        def update() -> bool:
            assert self.engine is not None
            engine = self.engine
            current = engine.deal_at(engine._deal_index(int(deal.Deal)))
            changes = {
                k: getattr(deal, k)
                for k in engine.CORRECTABLE
                if hasattr(deal, k) and getattr(deal, k) != current.get(k)
            }
            engine.deal_update(int(deal.Deal), **changes)
            return True

        return bool(self._run("DealUpdate", update))

    def DealDelete(self, ticket: int) -> bool:
        return bool(
            self._run("DealDelete", lambda: self.engine.deal_delete(ticket) is not None)  # type: ignore[union-attr]
        )

    def DealRequestByGroup(self, group: str, from_: datetime | int, to: datetime | int) -> Any:
        return self._run(
            "DealRequestByGroup",
            lambda: [
                MTDeal(dict(d))
                for d in self.engine.deals_by_time(_msc(from_), _msc(to))  # type: ignore[union-attr]
            ],
        )

    def PositionRequest(self, login: int) -> Any:
        return self._run(
            "PositionRequest",
            lambda: [
                MTPosition(p)
                for p in self.engine.positions_of(login)  # type: ignore[union-attr]
            ],
        )

    def PositionRequestByGroup(self, mask: str) -> Any:
        return self._run(
            "PositionRequestByGroup",
            lambda: [MTPosition(p) for p in self.engine.all_positions()],  # type: ignore[union-attr]
        )

    def TimeServer(self) -> int:
        """The server's time in seconds (computed on the client side)."""
        return (self.engine.now_msc() if self.engine is not None else 0) // 1000
