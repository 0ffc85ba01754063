"""The ingest consumer: batched, idempotent on (server, ticket), order-free, read model kept."""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections.abc import Iterator

import pytest

from brokerdesk.core.bus.base import Message
from brokerdesk.core.consumers import Consumer, register, unregister
from brokerdesk.trading.bridge import Bridge, MemoryCheckpointStore
from brokerdesk.trading.ingest import apply_account_state, apply_messages
from brokerdesk.trading.models import AccountSummary, TradingDeal, TradingPosition
from brokerdesk.trading.platform.port import (
    AccountState,
    Deal,
    DealAction,
    DealEntry,
    EventKind,
    PlatformEvent,
    Position,
    PositionAction,
)
from tests.trading.conftest import deal_closed_payloads

pytestmark = pytest.mark.django_db
T0 = 1_790_000_000_000


class _NoPort:
    server_name = "live"


def to_message(event: PlatformEvent, server: str = "live") -> Message:
    bridge = Bridge(server, _NoPort(), lambda m: None, MemoryCheckpointStore())  # type: ignore[arg-type]
    return bridge.to_message(event, "live")


def deal(ticket: int, login: int = 7001, **kw: object) -> Message:
    values: dict[str, object] = {
        "deal": ticket,
        "login": login,
        "action": DealAction.DEAL_BUY,
        "entry": DealEntry.ENTRY_IN,
        "time_msc": T0 + ticket,
        "currency_digits": 2,
        "symbol": "EURUSD",
        "volume": 10000,
        "commission": -350,
    }
    values.update(kw)
    return to_message(PlatformEvent(EventKind.DEAL_ADD, Deal(**values)))  # type: ignore[arg-type]


def position(pid: int, profit: int, t: int, kind: EventKind = EventKind.POSITION_UPDATE) -> Message:
    pos = Position(
        position=pid,
        login=7001,
        symbol="EURUSD",
        action=PositionAction.POSITION_BUY,
        volume=10000,
        volume_ext=10000 * 10000,
        price_open=108500,
        price_current=108400,
        digits=5,
        contract_size=100000,
        profit=profit,
        storage=0,
        currency_digits=2,
        time_create_msc=T0,
        time_update_msc=T0 + t,
    )
    return to_message(PlatformEvent(kind, pos, T0 + t))


def history() -> list[Message]:
    """Deposit 1,000.00, open, partial close (+20.00), close (-5.00), credit 50.00."""
    return [
        deal(1, action=DealAction.DEAL_BALANCE, profit=100_000, commission=0, symbol=""),
        deal(2, commission=-350),
        deal(
            3,
            action=DealAction.DEAL_SELL,
            entry=DealEntry.ENTRY_OUT,
            profit=2000,
            volume=5000,
            volume_closed=5000,
            commission=-175,
        ),
        deal(
            4,
            action=DealAction.DEAL_SELL,
            entry=DealEntry.ENTRY_OUT,
            profit=-500,
            volume=5000,
            volume_closed=5000,
            commission=-175,
            storage=-30,
        ),
        deal(5, action=DealAction.DEAL_CREDIT, profit=5000, commission=0, symbol=""),
    ]


EXPECTED_BALANCE = 100_000 - 350 + 2000 - 175 - 500 - 175 - 30


def summary() -> AccountSummary:
    return AccountSummary.objects.get(server="live", login=7001)


STREAM = f"platform.test-{uuid.uuid4().hex[:8]}"  # a fresh stream per run (Redis keeps them)


@pytest.fixture
def runner_spec() -> Iterator[Consumer]:
    spec = register("test.trading.ingest", [STREAM], apply_messages, batch_size=3)
    yield spec
    unregister("test.trading.ingest")


def on_stream(messages: list[Message]) -> list[Message]:
    return [dataclasses.replace(m, stream=STREAM) for m in messages]


def test_duplicates_and_reordering_store_each_deal_once_with_the_same_summary() -> None:
    # Given the same history delivered in order, and again shuffled with every event twice,
    apply_messages(history())
    first = summary()
    rng = random.Random(5)
    for _ in range(3):
        noisy = history() + history()
        rng.shuffle(noisy)
        for i in range(0, len(noisy), 3):  # in small batches
            apply_messages(noisy[i : i + 3])
    # then each deal is stored once and the read model did not move.
    assert TradingDeal.objects.filter(server="live").count() == 5
    again = summary()
    assert (again.balance, again.credit, again.deals) == (EXPECTED_BALANCE, 5000, 5)
    assert (first.balance, first.credit, first.last_deal_ticket) == (
        again.balance,
        again.credit,
        again.last_deal_ticket,
    )
    assert again.last_deal_ticket == 5 and again.last_deal_time_msc == T0 + 5
    assert again.equity == EXPECTED_BALANCE + 5000


def test_out_of_order_deals_give_the_same_state_as_in_order() -> None:
    msgs = history()
    apply_messages(list(reversed(msgs)))
    s = summary()
    assert (s.balance, s.credit, s.last_deal_ticket) == (EXPECTED_BALANCE, 5000, 5)


def test_closing_deals_emit_deal_closed_once() -> None:
    apply_messages(history())
    apply_messages(history())
    events = deal_closed_payloads()
    assert sorted(p["deal"] for p in events) == [3, 4]
    closed = {p["deal"]: p for p in events}
    assert closed[3]["volume_closed"] == 5000 and closed[3]["profit"] == 2000
    assert closed[4]["storage"] == -30


def test_the_closing_deals_of_a_batch_are_one_outbox_row() -> None:
    from brokerdesk.core.models import OutboxEvent

    apply_messages(history())  # two closing trades among them
    [row] = OutboxEvent.objects.filter(stream="trading", type="trading.deals_closed")
    assert row.payload["batch_of"] == "trading.deal_closed" and row.payload["count"] == 2
    assert not OutboxEvent.objects.filter(type="trading.deal_closed").exists()
    assert [p["deal"] for p in deal_closed_payloads()] == [3, 4]


def test_an_older_position_update_never_overwrites_a_newer_one() -> None:
    apply_messages(history()[:2])
    apply_messages([position(9, -1500, t=30)])
    apply_messages([position(9, -400, t=10)])  # older, arrives late
    row = TradingPosition.objects.get(server="live", position=9)
    assert row.profit == -1500
    s = summary()
    assert s.open_pl == -1500 and s.equity == s.balance + s.credit - 1500
    # A delete that overtook its last update wins: the late update does not reopen it.
    apply_messages([position(9, -1500, t=40, kind=EventKind.POSITION_DELETE)])
    apply_messages([position(9, -900, t=35)])
    assert TradingPosition.objects.get(server="live", position=9).closed
    assert summary().open_pl == 0


def test_account_snapshots_are_monotonic() -> None:
    apply_messages(history()[:1])
    state = AccountState(7001, 2, 100_000, 0, 100_000, 2000, 98_000, 500_000)
    assert apply_account_state("live", state, T0 + 100)
    older = AccountState(7001, 2, 100_000, 0, 100_000, 9999, 90_001, 100)
    assert not apply_account_state("live", older, T0 + 50)
    s = summary()
    assert (s.margin, s.margin_free, s.state_time_msc) == (2000, 98_000, T0 + 100)


def test_the_consumer_runner_batches_and_records_processed_ids(runner_spec) -> None:
    from brokerdesk.core.bus.factory import get_bus
    from brokerdesk.core.worker import drain

    bus = get_bus()
    try:
        bus.publish(on_stream(history() + history()[:2]))
        totals = drain(bus, [runner_spec])
        assert totals["test.trading.ingest"].processed == 5
        bus.publish(
            on_stream(history())
        )  # redelivered later: the processed ids turn it into a no-op
        drain(bus, [runner_spec])
    finally:
        bus.close()
    assert TradingDeal.objects.count() == 5
    assert summary().balance == EXPECTED_BALANCE


# --- columnar batches (the bridge on Redis Streams) --------------------------------------------


def test_batch_columns_are_the_table_columns_in_order() -> None:
    # The consumer copies a batch row into the table row by position.
    from brokerdesk.trading.bridge import DEAL_BATCH_COLUMNS, POSITION_BATCH_COLUMNS
    from brokerdesk.trading.ingest import DEAL_COLUMNS, POSITION_COLUMNS

    assert (DEAL_COLUMNS[1], *DEAL_COLUMNS[3:-1]) == DEAL_BATCH_COLUMNS
    assert POSITION_COLUMNS[1:] == POSITION_BATCH_COLUMNS


ACTIONS = [
    DealAction.DEAL_BUY,
    DealAction.DEAL_SELL,
    DealAction.DEAL_BALANCE,
    DealAction.DEAL_CREDIT,
    DealAction.DEAL_BUY_CANCELED,
]


def noisy_events(seed: int) -> list[PlatformEvent]:
    """Deals of every kind and position events for four logins, 10 % sent twice, shuffled
    locally (what the platform's duplicate and reorder faults do)."""
    rng = random.Random(seed)
    events: list[PlatformEvent] = []
    for ticket in range(100, 400):
        login = 7001 + rng.randrange(4)
        action = rng.choice(ACTIONS)
        entry = rng.choice([DealEntry.ENTRY_IN, DealEntry.ENTRY_OUT, DealEntry.ENTRY_INOUT])
        d = Deal(
            deal=ticket,
            login=login,
            action=action,
            entry=entry,
            time_msc=T0 + ticket * 10,
            currency_digits=2,
            profit=rng.randrange(-5000, 5000),
            commission=-rng.randrange(0, 500),
            storage=rng.randrange(-50, 50),
            fee=-rng.randrange(0, 3),
            order=ticket + 9000,
            position_id=ticket // 3,
            symbol="EURUSD",
            volume=rng.randrange(1, 5) * 1000,
            volume_closed=1000 if entry != DealEntry.ENTRY_IN else 0,
            price=108_500 + rng.randrange(-90, 90),
            digits=5,
            contract_size=100_000,
            comment=f"c{ticket}",
        )
        events.append(PlatformEvent(EventKind.DEAL_ADD, d, d.time_msc))
        if action in (DealAction.DEAL_BUY, DealAction.DEAL_SELL):
            kind = rng.choice(
                [EventKind.POSITION_ADD, EventKind.POSITION_UPDATE, EventKind.POSITION_DELETE]
            )
            p = Position(
                position=ticket // 3,
                login=login,
                symbol="EURUSD",
                action=PositionAction.POSITION_BUY,
                volume=1000,
                volume_ext=10_000_000,
                price_open=108_500,
                price_current=108_400 + rng.randrange(200),
                digits=5,
                contract_size=100_000,
                profit=rng.randrange(-900, 900),
                storage=-rng.randrange(20),
                currency_digits=2,
                time_create_msc=T0,
                time_update_msc=T0 + ticket * 10 + rng.randrange(3),
            )
            events.append(PlatformEvent(kind, p, p.time_update_msc))
    noisy = [e for e in events for _ in range(2 if rng.random() < 0.1 else 1)]
    for i in range(0, len(noisy) - 5, 5):
        window = noisy[i : i + 5]
        rng.shuffle(window)
        noisy[i : i + 5] = window
    return noisy


def stored_state(server: str) -> dict[str, object]:
    deals = sorted(
        TradingDeal.objects.filter(server=server).values_list(
            "deal", "time", "time_msc", "login", "action", "entry", "reason", "order",
            "position_id", "symbol", "volume", "volume_ext", "volume_closed",
            "volume_closed_ext", "price", "digits", "contract_size", "currency_digits",
            "profit", "commission", "storage", "fee", "comment", "external_id",
        )
    )  # fmt: skip
    summaries = sorted(
        AccountSummary.objects.filter(server=server).values_list(
            "login", "balance", "credit", "deals", "last_deal_ticket", "last_deal_time_msc",
            "open_pl", "equity", "currency_digits",
        )
    )  # fmt: skip
    positions = sorted(
        TradingPosition.objects.filter(server=server).values_list(
            "position", "login", "volume", "price_current", "profit", "storage", "closed",
            "time_update_msc",
        )
    )  # fmt: skip
    closed = sorted(
        (
            {k: v for k, v in p.items() if k != "server"}
            for p in deal_closed_payloads()
            if p["server"] == server
        ),
        key=lambda p: p["deal"],
    )
    return {"deals": deals, "summaries": summaries, "positions": positions, "closed": closed}


def test_columnar_batches_store_the_same_as_one_message_per_event() -> None:
    from brokerdesk.trading.bridge import BridgeConfig

    # Given the same noisy events published one message each and as columnar batches,
    events = noisy_events(seed=8)
    batching = Bridge(
        "cols",
        _NoPort(),
        lambda m: None,
        MemoryCheckpointStore(),
        BridgeConfig(batch_rows=40),  # type: ignore[arg-type]
    )
    for i in range(0, len(events), 97):
        chunk = events[i : i + 97]
        apply_messages([to_message(e, "one") for e in chunk])
        batches = batching._batch_messages(chunk, "live")
        assert {m.type for m in batches} == {"platform.deals", "platform.positions"}
        assert all(len(m.payload["rows"]) <= 40 for m in batches)
        apply_messages(batches)
        apply_messages(batches[::-1])  # redelivered, in another order: a no-op
    # then both ways store the same deals, summaries, positions and deal_closed events.
    one, cols = stored_state("one"), stored_state("cols")
    assert len(one["deals"]) == 300  # type: ignore[arg-type]
    assert one == cols


def test_a_batch_in_another_column_order_is_read_by_name() -> None:
    from brokerdesk.trading.bridge import DEAL_BATCH_COLUMNS

    d = Deal(
        deal=5, login=7001, action=DealAction.DEAL_SELL, entry=DealEntry.ENTRY_OUT,
        time_msc=T0 + 5, currency_digits=2, profit=1200, commission=-35, volume=1000,
        volume_closed=1000, symbol="EURUSD",
    )  # fmt: skip
    columns = list(reversed(DEAL_BATCH_COLUMNS))
    values = {
        k: int(v) if k in ("action", "entry", "reason") else v for k, v in d.to_dict().items()
    }
    message = Message(
        event_id=str(uuid.uuid4()),
        stream="platform.live",
        type="platform.deals",
        payload={"server": "live", "columns": columns, "rows": [[values[c] for c in columns]]},
        occurred_at="2026-01-01T00:00:00+00:00",
    )
    apply_messages([message, deal(5)])  # the same ticket again, one message: a duplicate
    stored = TradingDeal.objects.get(server="live", deal=5)
    assert (stored.profit, stored.entry, stored.volume_closed) == (1200, 1, 1000)
    assert summary().balance == 1200 - 35
    assert len(deal_closed_payloads()) == 1
