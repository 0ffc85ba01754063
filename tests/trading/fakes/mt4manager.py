"""A fake MT4 manager binding (the ``CManagerInterface`` shape ``MT4Adapter`` is written for).

Backed by the simulator engine, registered by address in ``SERVERS``. Records mirror the C++
structs' field names (``UserRecord``, ``TradeRecord``, ``TradeTransInfo``, ``MarginLevel``);
methods return ``RET_*`` codes, and lists instead of pointers.
"""

from __future__ import annotations

from typing import Any

from brokerdesk.trading.platform.mt4_adapter import (
    OP_BALANCE,
    OP_CREDIT,
    PUMP_STOP_PUMPING,
    PUMP_UPDATE_TRADES,
    PUMP_UPDATE_USERS,
    RET_ERROR,
    RET_INVALID_DATA,
    RET_NO_CONNECT,
    RET_OK,
    RET_TRADE_NO_MONEY,
    TRANS_ADD,
    TRANS_DELETE,
    TRANS_UPDATE,
    TT_BR_BALANCE,
)
from brokerdesk.trading.platform.port import DealAction, DealEntry, Retcode, UserRights
from brokerdesk.trading.simulator.engine import Engine, EngineError

SERVERS: dict[str, Engine] = {}


class _Struct:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


def UserRecord() -> _Struct:
    return _Struct(
        login=0,
        group="",
        password="",
        password_investor="",
        enable=1,
        enable_read_only=0,
        name="",
        email="",
        comment="",
        leverage=100,
        balance=0.0,
        credit=0.0,
    )


def TradeTransInfo() -> _Struct:
    return _Struct(type=0, cmd=0, order=0, orderby=0, symbol="", volume=0, price=0.0, comment="")


def _retcode(exc: EngineError) -> int:
    if exc.retcode == Retcode.MT_RET_REQUEST_NO_MONEY:
        return RET_TRADE_NO_MONEY
    if exc.retcode in (Retcode.MT_RET_ERR_PARAMS, Retcode.MT_RET_ERR_NOTFOUND):
        return RET_INVALID_DATA
    return RET_ERROR


class Manager:
    """``CManagerInterface`` over a simulator engine."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.pump: Any = None
        self.logged_in = False

    def ErrorDescription(self, code: int) -> str:
        return {
            RET_OK: "OK",
            RET_NO_CONNECT: "no connection",
            RET_TRADE_NO_MONEY: "no money",
            RET_INVALID_DATA: "invalid data",
        }.get(code, "error")

    def Connect(self, server: str) -> int:
        self.engine = SERVERS.get(server)
        return RET_OK if self.engine is not None else RET_NO_CONNECT

    def Login(self, login: int, password: str) -> int:
        self.logged_in = self.engine is not None
        return RET_OK if self.logged_in else RET_NO_CONNECT

    def Disconnect(self) -> int:
        if self.engine is not None and self._on_engine in self.engine.listeners:
            self.engine.listeners.remove(self._on_engine)
        self.engine = None
        return RET_OK

    def drop(self) -> None:
        """Test hook: the link dies (the pump says PUMP_STOP_PUMPING)."""
        pump = self.pump
        self.Disconnect()
        if pump is not None:
            pump(PUMP_STOP_PUMPING, 0, None, None)

    def PumpingSwitchEx(self, callback: Any, flags: int, param: Any) -> int:
        if self.engine is None:
            return RET_NO_CONNECT
        self.pump = callback
        self.engine.listeners.append(self._on_engine)
        return RET_OK

    # records
    def _user_rec(self, wire: dict[str, Any]) -> _Struct:
        rights = int(wire["Rights"])
        return _Struct(
            login=wire["Login"],
            group=wire["Group"],
            leverage=wire["Leverage"],
            name=wire["Name"],
            email=wire["EMail"],
            comment=wire["Comment"],
            enable=1 if rights & UserRights.USER_RIGHT_ENABLED else 0,
            enable_read_only=1 if rights & UserRights.USER_RIGHT_TRADE_DISABLED else 0,
            balance=wire["Balance"],
            credit=wire["Credit"],
            password="",
            password_investor="",
        )

    def _trade_rec(self, deal: dict[str, Any]) -> _Struct | None:
        action = deal["Action"]
        if action in (DealAction.DEAL_BALANCE, DealAction.DEAL_CREDIT):
            return _Struct(
                order=deal["Deal"],
                login=deal["Login"],
                symbol="",
                digits=0,
                cmd=OP_BALANCE if action == DealAction.DEAL_BALANCE else OP_CREDIT,
                volume=0,
                open_time=deal["Time"],
                close_time=deal["Time"],
                open_price=0.0,
                close_price=0.0,
                commission=0.0,
                storage=0.0,
                profit=deal["Profit"],
                comment=deal["Comment"],
                timestamp=deal["Time"],
            )
        if deal["Entry"] == DealEntry.ENTRY_OUT:
            return _Struct(
                order=deal["Deal"],
                login=deal["Login"],
                symbol=deal["Symbol"],
                digits=deal["Digits"],
                cmd=1 - action,
                volume=deal["Volume"] // 100,
                open_time=deal["Time"],
                close_time=deal["Time"],
                open_price=deal["PricePosition"],
                close_price=deal["Price"],
                commission=deal["Commission"],
                storage=deal["Storage"],
                profit=deal["Profit"],
                comment=deal["Comment"],
                timestamp=deal["Time"],
            )
        return None

    def _position_rec(self, pos: dict[str, Any]) -> _Struct:
        return _Struct(
            order=pos["Position"],
            login=pos["Login"],
            symbol=pos["Symbol"],
            digits=pos["Digits"],
            cmd=pos["Action"],
            volume=pos["Volume"] // 100,
            open_time=pos["TimeCreateMsc"] // 1000,
            close_time=0,
            open_price=pos["PriceOpen"],
            close_price=pos["PriceCurrent"],
            commission=0.0,
            storage=pos["Storage"],
            profit=pos["Profit"],
            comment=pos["Comment"],
            timestamp=pos["TimeUpdateMsc"] // 1000,
        )

    def _on_engine(self, kind: str, data: dict[str, Any]) -> None:
        if self.pump is None:
            return
        if kind.startswith("user."):
            self.pump(
                PUMP_UPDATE_USERS,
                TRANS_ADD if kind == "user.add" else TRANS_UPDATE,
                self._user_rec(data),
                None,
            )
        elif kind == "deal.add":
            rec = self._trade_rec(data)
            if rec is not None:
                self.pump(
                    PUMP_UPDATE_TRADES,
                    TRANS_ADD if rec.cmd in (OP_BALANCE, OP_CREDIT) else TRANS_UPDATE,
                    rec,
                    None,
                )
        elif kind in ("deal.update", "deal.delete"):  # a dealer's correction
            rec = self._trade_rec(data)
            if rec is not None:
                self.pump(
                    PUMP_UPDATE_TRADES,
                    TRANS_DELETE if kind == "deal.delete" else TRANS_UPDATE,
                    rec,
                    None,
                )
        elif kind == "position.add":
            self.pump(PUMP_UPDATE_TRADES, TRANS_ADD, self._position_rec(data), None)

    def _engine(self) -> Engine:
        if self.engine is None:
            raise EngineError(Retcode.MT_RET_ERR_CONNECTION, "no connection")
        return self.engine

    # users
    def UserRecordNew(self, user: _Struct) -> int:
        try:
            rights = UserRights.USER_RIGHT_ENABLED if user.enable else UserRights.USER_RIGHT_NONE
            if user.enable_read_only:
                rights |= UserRights.USER_RIGHT_TRADE_DISABLED
            wire = self._engine().user_add(
                user.group,
                user.leverage,
                user.name,
                login=user.login,
                email=user.email,
                rights=int(rights),
                comment=user.comment,
            )
        except EngineError as exc:
            return _retcode(exc)
        user.login = wire["Login"]
        return RET_OK

    def UserRecordsRequest(self, logins: list[int]) -> list[_Struct]:
        engine = self._engine()
        return [self._user_rec(engine.user_get(x)) for x in logins if x in engine.users]

    def UsersRequest(self) -> list[_Struct]:
        engine = self._engine()
        return [self._user_rec(engine.user_get(x)) for x in list(engine.users)]

    def UserRecordUpdate(self, user: _Struct) -> int:
        rights = UserRights.USER_RIGHT_ENABLED if user.enable else UserRights.USER_RIGHT_NONE
        if user.enable_read_only:
            rights |= UserRights.USER_RIGHT_TRADE_DISABLED
        try:
            self._engine().user_update(
                user.login,
                Group=user.group,
                Leverage=user.leverage,
                Rights=int(rights),
                Name=user.name,
                EMail=user.email,
                Comment=user.comment,
            )
        except EngineError as exc:
            return _retcode(exc)
        return RET_OK

    # trading
    def TradeTransaction(self, info: _Struct) -> int:
        if info.type != TT_BR_BALANCE or info.cmd not in (OP_BALANCE, OP_CREDIT):
            return RET_INVALID_DATA
        try:
            engine = self._engine()
            action = DealAction.DEAL_BALANCE if info.cmd == OP_BALANCE else DealAction.DEAL_CREDIT
            deal = engine.dealer_balance(
                info.orderby, round(info.price * 100), action, info.comment
            )
        except EngineError as exc:
            return _retcode(exc)
        info.order = deal["Deal"]
        return RET_OK

    def TradesUserHistory(self, login: int, from_: int, to: int) -> list[_Struct]:
        engine = self._engine()
        if login not in engine.users:
            return []
        recs = (self._trade_rec(d) for d in engine.deals_of(login, from_ * 1000, to * 1000 + 999))
        return [r for r in recs if r is not None]

    def TradesGetByLogin(self, login: int, group: str) -> list[_Struct]:
        return [self._position_rec(p) for p in self._engine().positions_of(login)]

    def MarginLevelRequest(self, login: int) -> tuple[int, Any]:
        engine = self._engine()
        if login not in engine.users:
            return RET_INVALID_DATA, None
        acc = engine.account(login)
        return RET_OK, _Struct(
            login=login,
            group=engine.users[login].group,
            leverage=engine.users[login].leverage,
            balance=acc["Balance"],
            equity=acc["Equity"],
            margin=acc["Margin"],
            margin_free=acc["MarginFree"],
            margin_level=acc["MarginLevel"],
        )
