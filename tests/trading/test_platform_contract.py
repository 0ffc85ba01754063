"""One contract for every platform adapter that can run here.

* ``simulator``: ``SimulatorAdapter`` over TCP against a ``brokerdesk simulator mt5`` process;
* ``mt5-fake``: ``MT5Adapter`` with the in-repo fake of the ``MT5Manager`` package;
* ``mt4-fake``: ``MT4Adapter`` with the in-repo fake of an MT4 manager binding.

The fakes run the simulator's engine in-process, so the three see the same server behaviour
through three different client interfaces.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from brokerdesk.core.errors import ValidationError
from brokerdesk.trading.platform.mt4_adapter import MT4Adapter
from brokerdesk.trading.platform.mt5_adapter import MT5Adapter
from brokerdesk.trading.platform.port import (
    AccountState,
    BalanceOp,
    Deal,
    DealAction,
    DealEntry,
    EventKind,
    NewUser,
    NoMoney,
    PlatformEvent,
    PlatformPort,
    PositionAction,
    transfer_comment,
)
from brokerdesk.trading.platform.simulator_adapter import SimulatorAdapter
from brokerdesk.trading.simulator.engine import Engine
from tests.trading.fakes import mt4manager as fake_mt4
from tests.trading.fakes import mt5manager as fake_mt5

ADDRESS = "10.0.0.5:443"
UPDATE = EventKind.DEAL_UPDATE
DELETE = EventKind.DEAL_DELETE


class Backend:
    """An adapter plus the levers a test needs on the server behind it (client trading, prices)."""

    def __init__(self, name: str, port: PlatformPort, events: list[PlatformEvent]) -> None:
        self.name = name
        self.port = port
        self.events = events
        self.engine: Engine | None = None

    def _server(self, method: str, **params: Any) -> Any:
        if self.engine is None:
            assert isinstance(self.port, SimulatorAdapter)
            return self.port.control(method, **params)
        engine = self.engine
        if method == "trade_open":
            return engine.open_position(
                params["login"], params["symbol"], params["action"], params["volume"]
            )
        if method == "trade_close":
            return engine.close_position(params["position"], params.get("volume"))
        if method == "set_price":
            engine.set_price(params["symbol"], params["bid"])
            for login in list(engine.positions_by_login):
                engine.check_stop_out(login)
            return None
        if self.name == "mt5-fake" and method in ("deal_update", "deal_delete"):
            # A dealer's application on the same server, through the Manager API itself:
            # DealRequest(ticket) → change → DealUpdate(deal), or DealDelete(ticket).
            api = self.port._api  # type: ignore[attr-defined]
            ticket = params.pop("ticket")
            if method == "deal_delete":
                assert api.DealDelete(ticket)
                return {}
            deal = api.DealRequest(ticket)
            for name, value in params.items():
                setattr(deal, name, value)
            assert api.DealUpdate(deal)
            return dict(deal.__dict__)
        if method == "deal_update":
            return engine.deal_update(params.pop("ticket"), **params)
        if method == "deal_delete":
            return engine.deal_delete(params["ticket"])
        raise AssertionError(method)

    def dealer_update(self, ticket: int, **changes: Any) -> dict[str, Any]:
        """A dealer at the server corrects a deal (MT5 ``DealUpdate``; MT5 field names)."""
        return self._server("deal_update", ticket=ticket, **changes)

    def dealer_delete(self, ticket: int) -> dict[str, Any]:
        """A dealer at the server deletes a deal (MT5 ``DealDelete``)."""
        return self._server("deal_delete", ticket=ticket)

    def events_of(self, kind: EventKind) -> list[PlatformEvent]:
        """The events of one kind received so far."""
        return [e for e in list(self.events) if e.kind == kind]

    def open(self, login: int, symbol: str, action: int, volume: int) -> dict[str, Any]:
        """A client opens a position (market order): returns the ``ENTRY_IN`` deal (MT5 fields)."""
        return self._server("trade_open", login=login, symbol=symbol, action=action, volume=volume)

    def close(self, position: int, volume: int | None = None) -> dict[str, Any]:
        """A client closes all or part of a position."""
        return self._server("trade_close", position=position, volume=volume)

    def set_bid(self, symbol: str, bid: float) -> None:
        """Move the market."""
        self._server("set_price", symbol=symbol, bid=bid)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Poll until ``predicate()`` or timeout (events arrive on another thread)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()


@pytest.fixture(params=["simulator", "mt5-fake", "mt4-fake"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    events: list[PlatformEvent] = []
    lock = threading.Lock()

    def collect(event: PlatformEvent) -> None:
        with lock:
            events.append(event)

    engine: Engine | None = None
    port: PlatformPort
    if request.param == "simulator":
        sim = request.getfixturevalue("contract_simulator")
        port = SimulatorAdapter("contract", port=sim.port)
    elif request.param == "mt5-fake":
        engine = Engine(name="mt5-fake", seed=5)
        fake_mt5.SERVERS[ADDRESS] = engine
        port = MT5Adapter("mt5", ADDRESS, 1001, "Manager#1", module=fake_mt5)
    else:
        engine = Engine(name="mt4-fake", seed=4)
        fake_mt4.SERVERS[ADDRESS] = engine
        port = MT4Adapter("mt4", ADDRESS, 1, "manager", module=fake_mt4)
    port.subscribe(collect)  # before connecting, as MT5 wants
    port.connect()
    backend = Backend(request.param, port, events)
    backend.engine = engine
    try:
        yield backend
    finally:
        port.disconnect()
        fake_mt5.SERVERS.pop(ADDRESS, None)
        fake_mt4.SERVERS.pop(ADDRESS, None)


def new_login(backend: Backend, group: str = "real\\standard", **kwargs: Any) -> int:
    return backend.port.create_user(
        NewUser(
            group=group,
            leverage=100,
            name="Ada Lovelace",
            email="ada@example.com",
            master_password="Aa1!aaaa",
            investor_password="Bb2!bbbb",
            **kwargs,
        )
    ).login


def now_msc() -> int:
    return time.time_ns() // 1_000_000


# --- users --------------------------------------------------------------------------------------


def test_create_user_allocates_a_login_in_the_group_with_the_leverage(backend: Backend) -> None:
    port = backend.port
    user = port.create_user(NewUser(group="real\\standard", leverage=200, name="Grace Hopper"))
    assert user.login > 0
    fetched = port.get_user(user.login)
    assert (fetched.group, fetched.leverage, fetched.name) == (
        "real\\standard",
        200,
        "Grace Hopper",
    )
    assert fetched.enabled and fetched.trade_enabled
    assert fetched.currency_digits == 2


def test_one_client_can_hold_many_logins(backend: Backend) -> None:
    logins = {new_login(backend) for _ in range(3)}
    assert len(logins) == 3


def test_update_user_changes_descriptive_fields(backend: Backend) -> None:
    login = new_login(backend)
    updated = backend.port.update_user(login, name="Ada King", email="ada.king@example.com")
    assert (updated.name, updated.email) == ("Ada King", "ada.king@example.com")
    assert backend.port.get_user(login).name == "Ada King"


def test_trading_can_be_disabled_and_enabled_again(backend: Backend) -> None:
    port = backend.port
    login = new_login(backend)
    assert not port.set_trading_enabled(login, False).trade_enabled
    assert not port.get_user(login).trade_enabled
    assert port.get_user(login).enabled, "disabling trading must not disable the login"
    assert port.set_trading_enabled(login, True).trade_enabled


def test_group_and_leverage_change(backend: Backend) -> None:
    port = backend.port
    login = new_login(backend)
    assert port.change_group(login, "real\\pro").group == "real\\pro"
    assert port.change_leverage(login, 30).leverage == 30
    user = port.get_user(login)
    assert (user.group, user.leverage) == ("real\\pro", 30)


# --- money --------------------------------------------------------------------------------------


def test_deposit_returns_the_ticket_of_a_balance_deal_carrying_our_comment(
    backend: Backend,
) -> None:
    port = backend.port
    login = new_login(backend)
    comment = transfer_comment(uuid.uuid4())
    before = now_msc() - 1000
    ticket = port.balance_operation(login, BalanceOp.DEPOSIT, 60_000, comment)
    deals = port.deals(login, before, now_msc() + 1000)
    assert [(d.deal, d.action, d.profit, d.comment) for d in deals] == [
        (ticket, DealAction.DEAL_BALANCE, 60_000, comment)
    ]
    state = port.account_state(login)
    assert (state.balance, state.credit, state.equity, state.margin) == (60_000, 0, 60_000, 0)
    assert state.margin_free == 60_000


def test_withdrawal_and_credit_in_and_out(backend: Backend) -> None:
    port = backend.port
    login = new_login(backend)
    t1 = port.balance_operation(login, BalanceOp.DEPOSIT, 100_000, "dep")
    t2 = port.balance_operation(login, BalanceOp.WITHDRAWAL, 20_000, "wd")
    t3 = port.balance_operation(login, BalanceOp.CREDIT_IN, 5_000, "bonus in")
    t4 = port.balance_operation(login, BalanceOp.CREDIT_OUT, 2_000, "bonus out")
    assert t1 < t2 < t3 < t4, "deal tickets increase"
    state = port.account_state(login)
    assert (state.balance, state.credit, state.equity) == (80_000, 3_000, 83_000)
    deals = port.deals(login, 0, now_msc() + 1000)
    assert [(d.action, d.profit) for d in deals] == [
        (DealAction.DEAL_BALANCE, 100_000),
        (DealAction.DEAL_BALANCE, -20_000),
        (DealAction.DEAL_CREDIT, 5_000),
        (DealAction.DEAL_CREDIT, -2_000),
    ]


def test_withdrawal_above_the_balance_is_refused_and_moves_nothing(backend: Backend) -> None:
    port = backend.port
    login = new_login(backend)
    port.balance_operation(login, BalanceOp.DEPOSIT, 10_000, "dep")
    with pytest.raises(NoMoney):
        port.balance_operation(login, BalanceOp.WITHDRAWAL, 10_001, "too much")
    with pytest.raises(NoMoney):
        port.balance_operation(login, BalanceOp.CREDIT_OUT, 1, "no credit")
    assert port.account_state(login).balance == 10_000
    assert len(port.deals(login, 0, now_msc() + 1000)) == 1


def test_a_comment_the_platform_would_cut_is_refused_before_sending(backend: Backend) -> None:
    port = backend.port
    login = new_login(backend)
    with pytest.raises(ValidationError):
        port.balance_operation(login, BalanceOp.DEPOSIT, 100, str(uuid.uuid4()))
    assert port.deals(login, 0, now_msc() + 1000) == []


def test_find_balance_deal_by_comment(backend: Backend) -> None:
    port = backend.port
    login = new_login(backend)
    since = now_msc() - 1000
    comment = transfer_comment(uuid.uuid4())
    port.balance_operation(login, BalanceOp.DEPOSIT, 700, "other")
    ticket = port.balance_operation(login, BalanceOp.DEPOSIT, 500, comment)
    found = port.find_balance_deal(login, comment, since)
    assert found is not None and (found.deal, found.profit) == (ticket, 500)
    assert port.find_balance_deal(login, transfer_comment(uuid.uuid4()), since) is None


def test_deals_since_a_ticket_returns_the_newer_deals_in_ticket_order(backend: Backend) -> None:
    port = backend.port
    login = new_login(backend)
    first = port.balance_operation(login, BalanceOp.DEPOSIT, 1_000, "a")
    later = [port.balance_operation(login, BalanceOp.DEPOSIT, 1_000 + i, f"b{i}") for i in range(3)]
    since = port.deals_since(first, since_msc=None)
    assert [d.deal for d in since] == later


def test_deal_events_reach_subscribers_with_the_returned_ticket(backend: Backend) -> None:
    port = backend.port
    login = new_login(backend)
    ticket = port.balance_operation(login, BalanceOp.DEPOSIT, 12_345, "evt")
    assert backend.wait_for(
        lambda: any(
            e.kind == EventKind.DEAL_ADD and getattr(e.data, "deal", None) == ticket
            for e in backend.events
        )
    )
    event = next(e for e in backend.events if getattr(e.data, "deal", None) == ticket)
    assert event.data.profit == 12_345 and event.data.login == login  # type: ignore[union-attr]


# --- trading: money and volume come from deals ----------------------------------------------------


def test_partial_and_full_close_produce_out_deals_whose_money_explains_the_balance(
    backend: Backend,
) -> None:
    port = backend.port
    login = new_login(backend, group="demo\\standard")
    port.balance_operation(login, BalanceOp.DEPOSIT, 1_000_000, "dep")
    opened = backend.open(login, "EURUSD", PositionAction.POSITION_BUY, 20_000)  # 2 lots
    position = opened["PositionID"]
    [pos] = port.positions(login)
    assert (pos.position, pos.volume, pos.volume_ext, pos.action) == (
        position,
        20_000,
        200_000_000,
        0,
    )
    backend.close(position, 5_000)  # partial: 0.5 lot
    assert [p.volume for p in port.positions(login)] == [15_000]
    backend.close(position)
    assert port.positions(login) == []

    deals = [d for d in port.deals(login, 0, now_msc() + 1000) if d.is_trade]
    outs = [d for d in deals if d.entry == DealEntry.ENTRY_OUT]
    assert [d.volume for d in outs] == [5_000, 15_000], "a partial close is its own deal"
    assert all(d.action == DealAction.DEAL_SELL for d in outs), "closing a buy is a sell deal"
    if backend.name != "mt4-fake":
        # MT4 has no position id: a partial close re-tickets the remaining volume.
        assert all(d.position_id == position for d in outs)
    money_from_deals = sum(d.profit + d.commission + d.storage for d in deals)
    assert port.account_state(login).balance == 1_000_000 + money_from_deals


def test_a_loss_shows_in_equity_and_not_in_balance_until_closed(backend: Backend) -> None:
    port = backend.port
    login = new_login(backend, group="demo\\standard")
    port.balance_operation(login, BalanceOp.DEPOSIT, 60_000, "dep")
    opened = backend.open(login, "EURUSD", PositionAction.POSITION_BUY, 1_000)  # 0.1 lot
    ask_points = round(opened["Price"] * 100_000)
    backend.set_bid("EURUSD", (ask_points - 500) / 100_000)  # 500 points x 0.1 lot = 50 USD
    state = port.account_state(login)
    assert state.balance == 60_000
    assert state.equity == 60_000 - 5_000
    assert state.margin > 0 and state.margin_free == state.equity - state.margin
    assert state.margin_level == pytest.approx(state.equity * 10_000 / state.margin, abs=1)
    backend.close(opened["PositionID"])
    assert port.account_state(login).balance == 55_000


# --- dealer corrections ---------------------------------------------------------------------------


def test_a_dealer_correction_of_a_deal_is_pushed_with_its_new_state(backend: Backend) -> None:
    port = backend.port
    login = new_login(backend)
    ticket = port.balance_operation(login, BalanceOp.DEPOSIT, 50_000, "dep")
    # A dealer finds the deposit was 450.00, not 500.00, and corrects the deal on the server.
    backend.dealer_update(ticket, Profit=450.0, Comment="dep corrected")
    assert backend.wait_for(
        lambda: any(getattr(e.data, "deal", 0) == ticket for e in backend.events_of(UPDATE))
    )
    [event] = [e for e in backend.events_of(UPDATE) if getattr(e.data, "deal", 0) == ticket]
    deal = event.data
    assert isinstance(deal, Deal)
    assert (deal.login, deal.action, deal.profit, deal.comment) == (
        login,
        DealAction.DEAL_BALANCE,
        45_000,
        "dep corrected",
    ), "the event carries the deal's new state"
    assert [(d.deal, d.profit) for d in port.deals(login, 0, now_msc() + 1000)] == [
        (ticket, 45_000)
    ]
    assert port.account_state(login).balance == 45_000


def test_a_dealer_deletion_is_pushed_and_the_deal_leaves_the_history(backend: Backend) -> None:
    port = backend.port
    login = new_login(backend)
    kept = port.balance_operation(login, BalanceOp.DEPOSIT, 10_000, "kept")
    gone = port.balance_operation(login, BalanceOp.DEPOSIT, 7_000, "mistake")
    backend.dealer_delete(gone)
    assert backend.wait_for(
        lambda: any(getattr(e.data, "deal", 0) == gone for e in backend.events_of(DELETE))
    )
    [event] = [e for e in backend.events_of(DELETE) if getattr(e.data, "deal", 0) == gone]
    assert isinstance(event.data, Deal) and event.data.profit == 7_000, "its last state"
    assert [d.deal for d in port.deals(login, 0, now_msc() + 1000)] == [kept]
    assert gone not in [d.deal for d in port.deals_since(kept - 1, since_msc=now_msc() - 60_000)]
    assert port.account_state(login).balance == 10_000


def test_a_trade_deal_correction_is_pushed(backend: Backend) -> None:
    if backend.name == "mt4-fake":
        pytest.skip("MT4 pumps a closed trade's correction as the same TRANS_UPDATE as its close")
    port = backend.port
    login = new_login(backend, group="demo\\standard")
    port.balance_operation(login, BalanceOp.DEPOSIT, 1_000_000, "dep")
    opened = backend.open(login, "EURUSD", PositionAction.POSITION_BUY, 1_000)
    closing = backend.close(opened["PositionID"])
    before = port.account_state(login).balance
    backend.dealer_update(closing["Deal"], Commission=-1.25)
    assert backend.wait_for(
        lambda: any(
            getattr(e.data, "deal", 0) == closing["Deal"] for e in backend.events_of(UPDATE)
        )
    )
    [event] = [
        e for e in backend.events_of(UPDATE) if getattr(e.data, "deal", 0) == closing["Deal"]
    ]
    assert isinstance(event.data, Deal)
    assert (event.data.entry, event.data.commission) == (DealEntry.ENTRY_OUT, -125)
    assert port.account_state(login).balance == before - 125 - round(closing["Commission"] * 100)


# --- resynchronisation requests -------------------------------------------------------------------


def test_open_positions_of_the_whole_server_and_account_states_by_logins(backend: Backend) -> None:
    port = backend.port
    a, b = new_login(backend, group="demo\\standard"), new_login(backend, group="demo\\standard")
    for login in (a, b):
        port.balance_operation(login, BalanceOp.DEPOSIT, 1_000_000, "dep")
    kept = backend.open(a, "EURUSD", PositionAction.POSITION_BUY, 1_000)["PositionID"]
    closed = backend.open(b, "EURUSD", PositionAction.POSITION_SELL, 1_000)["PositionID"]
    backend.close(closed)
    snapshot = {p.position: p for p in port.open_positions()}
    assert kept in snapshot and closed not in snapshot
    assert snapshot[kept].login == a and snapshot[kept].volume == 1_000
    unknown = 99_999_999
    states = {s.login: s for s in port.account_states([a, b, unknown])}
    assert set(states) == {a, b}, "unknown logins are left out"
    assert states[a].balance == port.account_state(a).balance
    assert states[a].margin > 0 and states[b].margin == 0
    assert port.account_states([]) == []


# --- pushed account events ------------------------------------------------------------------------


def test_a_stop_out_is_pushed_as_an_account_event(backend: Backend) -> None:
    if backend.name == "mt4-fake":
        pytest.skip("the MT4 adapter does not map the pump's MARGINCALL updates")
    port = backend.port
    login = new_login(backend, group="demo\\standard")
    port.balance_operation(login, BalanceOp.DEPOSIT, 100_000, "dep")  # 1,000.00
    opened = backend.open(login, "XAUUSD", PositionAction.POSITION_BUY, 2_000)  # 0.2 lot, 20 oz
    backend.set_bid("XAUUSD", opened["Price"] - 100.0)  # 2,000.00 lost: far below stop-out
    stop_outs = lambda: [  # noqa: E731
        e
        for e in backend.events_of(EventKind.ACCOUNT_STOP_OUT)
        if e.data.login == login  # type: ignore[union-attr]
    ]
    assert backend.wait_for(lambda: bool(stop_outs()))
    state = stop_outs()[0].data
    assert isinstance(state, AccountState)
    assert state.margin == 0 and state.balance < 0, "the position was closed at a loss"
    assert state.equity == state.balance + state.credit
    assert port.positions(login) == []


# --- MT5 adapter: the Manager API's pushes (fake MT5Manager) ------------------------------


@pytest.fixture
def mt5_backend() -> Iterator[Backend]:
    engine = Engine(name="mt5-push", seed=9)
    fake_mt5.SERVERS[ADDRESS] = engine
    events: list[PlatformEvent] = []
    port = MT5Adapter("mt5", ADDRESS, 1001, "Manager#1", module=fake_mt5)
    port.subscribe(events.append)
    port.connect()
    backend = Backend("mt5-fake", port, events)
    backend.engine = engine
    try:
        yield backend
    finally:
        port.disconnect()
        fake_mt5.SERVERS.pop(ADDRESS, None)


def test_mt5_subscribes_the_account_sink_before_connecting(mt5_backend: Backend) -> None:
    api = mt5_backend.port._api  # type: ignore[attr-defined]
    assert api.sinks["account"], "ManagerAPI.UserAccountSubscribe(IMTAccountSink)"
    sink = api.sinks["account"][0]
    for callback in (
        "OnAccountMarginCallEnter",
        "OnAccountMarginCallLeave",
        "OnAccountStopOutEnter",
        "OnAccountStopOutLeave",
    ):
        assert callable(getattr(sink, callback))


def test_mt5_on_user_update_pushes_the_user_and_the_cached_account(mt5_backend: Backend) -> None:
    port = mt5_backend.port
    login = new_login(mt5_backend)
    port.balance_operation(login, BalanceOp.DEPOSIT, 25_000, "dep")
    port.change_leverage(login, 50)  # IMTUserSink::OnUserUpdate
    users = [e for e in mt5_backend.events_of(EventKind.USER_UPDATE) if e.data.login == login]  # type: ignore[union-attr]
    assert users and users[-1].data.leverage == 50 and users[-1].data.balance == 25_000  # type: ignore[union-attr]
    accounts = [
        e
        for e in mt5_backend.events_of(EventKind.ACCOUNT_UPDATE)
        if e.data.login == login  # type: ignore[union-attr]
    ]
    assert accounts, "UserAccountGet from the pumped cache, pushed as account.update"
    state = accounts[-1].data
    assert isinstance(state, AccountState)
    assert (state.balance, state.equity, state.margin) == (25_000, 25_000, 0)


@pytest.mark.parametrize(
    ("engine_kind", "expected"),
    [
        ("account.margin_call", EventKind.ACCOUNT_MARGIN_CALL),
        ("account.margin_call_leave", EventKind.ACCOUNT_MARGIN_CALL_LEAVE),
        ("account.stop_out", EventKind.ACCOUNT_STOP_OUT),
        ("account.stop_out_leave", EventKind.ACCOUNT_STOP_OUT_LEAVE),
    ],
)
def test_mt5_account_sink_callbacks_become_account_events(
    mt5_backend: Backend, engine_kind: str, expected: EventKind
) -> None:
    login = new_login(mt5_backend)
    mt5_backend.port.balance_operation(login, BalanceOp.DEPOSIT, 1_000, "dep")
    engine = mt5_backend.engine
    assert engine is not None
    engine._emit(engine_kind, engine.account(login))  # the server's IMTAccountSink callback
    [event] = [e for e in mt5_backend.events_of(expected) if e.data.login == login]  # type: ignore[union-attr]
    assert isinstance(event.data, AccountState) and event.data.balance == 1_000
