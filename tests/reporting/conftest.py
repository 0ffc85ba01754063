"""Fixtures for the reporting tests: real deals, payments, commissions and alerts as events.

The source modules run for real (trading's ingest, the payments service with the sandbox
PSP, the partners accrual engine, compliance's event); their outbox events are handed to the
reporting projectors the way the consumer runner does, or through the real bus.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from django.db.models import Q

from brokerdesk.core.bus.base import Message
from brokerdesk.core.bus.batch import expand_all
from brokerdesk.core.models import OutboxEvent
from brokerdesk.reporting import consumers
from brokerdesk.reporting.services import PROJECTED_TYPES
from brokerdesk.trading import services as trading
from brokerdesk.trading.bridge import Bridge, MemoryCheckpointStore
from brokerdesk.trading.ingest import apply_messages as ingest
from brokerdesk.trading.platform.port import Deal, DealAction, DealEntry, EventKind, PlatformEvent
from tests.payments.conftest import default_rules, local_psp  # noqa: F401 - fixtures

_seq = itertools.count(1)
SERVER = "MT5-Live"
DAY1 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
DAY2 = datetime(2026, 3, 3, 15, 30, tzinfo=UTC)

HANDLERS = {
    "payments": consumers.project_payments,
    "trading": consumers.project_trading,
    "partners": consumers.project_partners,
    "compliance": consumers.project_compliance,
}


@pytest.fixture(autouse=True)
def bundled_rule_sets(request: pytest.FixtureRequest) -> None:
    """The bundled jurisdiction rule sets (compliance's policy needs them)."""
    from brokerdesk.compliance import services as compliance

    marker = request.node.get_closest_marker("django_db")
    if marker is None:
        return
    request.getfixturevalue("transactional_db" if marker.kwargs.get("transaction") else "db")
    compliance.load_bundled_rule_sets()


def outbox_messages(*, after: set[str] | None = None) -> list[Message]:
    """The stored outbox events the projectors read, as bus messages, in order."""
    types = set().union(*PROJECTED_TYPES.values())
    rows = OutboxEvent.objects.filter(
        Q(type__in=types) | Q(payload__batch_of__in=types)  # batch events: by their items
    ).order_by("occurred_at", "id")
    stored = [
        Message(
            str(e.id),
            e.stream,
            e.type,
            e.payload,
            e.occurred_at.isoformat(),
            e.version,
            e.aggregate_id,
        )
        for e in rows
    ]
    return [
        m
        for m in expand_all(stored)  # as the consumer runner hands them over
        if m.type in types and (after is None or m.event_id not in after)
    ]


def project(messages: list[Message]) -> None:
    """Hand the messages to each stream's projector, as the consumer runner does."""
    for stream, handler in HANDLERS.items():
        batch = [m for m in messages if m.stream == stream]
        if batch:
            handler(batch)


class _Port:
    server_name = SERVER


def open_account(client_id: UUID | str, login: int | None = None, currency: str = "USD") -> int:
    """A trading account of the client on ``SERVER`` (emits ``trading.account_opened``)."""
    from brokerdesk.clients import services as clients

    login = login or 70_000 + next(_seq)
    account = trading.register_trading_account(
        server=SERVER,
        login=login,
        client_id=str(client_id),
        currency=currency,
        group="real\\std",
        leverage=100,
    )
    clients.link_platform_login(
        client_id,
        platform="mt5",
        server=SERVER,
        login=login,
        currency=currency,
        is_live=True,
        by="system:test",
        trading_account_id=account.id,
    )
    return login


def trade(
    login: int, *, at: datetime, volume: int = 10_000, profit: int = 0, commission: int = -350
) -> None:
    """One round trip on the platform (open and close) through trading's real ingest."""
    ticket = next(_seq) * 2 + 1_000_000
    time_msc = int(at.timestamp() * 1000)
    bridge = Bridge(SERVER, _Port(), lambda m: None, MemoryCheckpointStore())  # type: ignore[arg-type]
    common: dict[str, Any] = {
        "login": login,
        "currency_digits": 2,
        "symbol": "EURUSD",
        "volume": volume,
        "position_id": ticket,
        "price": 108_500,
        "digits": 5,
        "contract_size": 100_000,
    }
    opening = Deal(
        deal=ticket,
        action=DealAction.DEAL_BUY,
        entry=DealEntry.ENTRY_IN,
        time_msc=time_msc - 60_000,
        commission=commission,
        **common,
    )
    closing = Deal(
        deal=ticket + 1,
        action=DealAction.DEAL_SELL,
        entry=DealEntry.ENTRY_OUT,
        time_msc=time_msc,
        profit=profit,
        commission=commission,
        volume_closed=volume,
        **common,
    )
    ingest(
        [
            bridge.to_message(PlatformEvent(EventKind.DEAL_ADD, d), "live")
            for d in (opening, closing)
        ]
    )
