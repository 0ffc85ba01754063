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
    BalanceOp,
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
            return None
        raise AssertionError(method)

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
