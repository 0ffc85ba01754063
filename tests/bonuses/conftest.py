"""Fixtures and factories for the bonuses tests: clients under a rule set that allows
bonuses, campaigns, and delivery of the real outbox events to the registered consumers."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from brokerdesk.bonuses import services
from brokerdesk.bonuses.models import Campaign
from brokerdesk.compliance import services as compliance
from brokerdesk.compliance.kyc import KycState
from brokerdesk.core.bus.base import Message
from brokerdesk.core.consumers import autodiscover
from brokerdesk.core.ids import new_id
from brokerdesk.core.models import OutboxEvent
from brokerdesk.ledger import queries as ledger_queries
from brokerdesk.ledger import services as ledger
from tests.clients.factories import individual

_seq = itertools.count(1)
FINANCE = "system:finance-test"


@pytest.fixture(autouse=True)
def bundled_rule_sets(request: pytest.FixtureRequest) -> None:
    """The bundled jurisdiction rule sets (the policy ``may`` needs them)."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None:
        return
    request.getfixturevalue("transactional_db" if marker.kwargs.get("transaction") else "db")
    compliance.load_bundled_rule_sets()


def client(
    *, verified: bool = True, jurisdiction: str = "fsa-sc", country: str = "GB", user: Any = None
) -> UUID:
    """A registered individual (KYC approved unless ``verified`` is False)."""
    c = individual(jurisdiction=jurisdiction, country=country, user=user)
    if verified:
        for step in (KycState.UNDER_VERIFICATION, KycState.APPROVED):
            compliance.transition_kyc(
                c.pk, step, by="system:test", reason="test", provider="sumsub"
            )
    return c.pk


def campaign(**terms: Any) -> Campaign:
    """A running campaign; defaults: a 50 % USD deposit credit bonus, $5 per lot unlocks."""
    data: dict[str, Any] = {
        "name": f"Welcome {next(_seq)}",
        "kind": "credit",
        "trigger": "deposit",
        "currency": "USD",
        "percent_bps": 5_000,
        "unlock_per_lot": 500,
    }
    data.update(terms)
    code = data.pop("code", f"camp-{new_id().hex[-12:]}")
    return services.create_campaign(code=code, by=FINANCE, **data)


def fund(client_id: UUID, amount: int, currency: str = "USD") -> None:
    """Credit a client's cash from the sandbox clearing account (a deposit, ledger only)."""
    ledger.transfer(
        f"test-fund-{client_id}-{next(_seq)}",
        debit_account=ledger.system_account("psp_clearing", currency, qualifier="sandbox").id,
        credit_account=ledger.wallet_account(client_id, currency).id,
        amount=amount,
        currency=currency,
        kind="deposit",
    )


def bucket(client_id: UUID, bucket_name: str, currency: str = "USD") -> int:
    """The posted balance of one wallet bucket."""
    account = ledger.wallet_account(client_id, currency, bucket_name)
    return ledger_queries.balance(account.id).posted


def expense(currency: str = "USD") -> int:
    """The posted balance of the bonus expense account (negative: what bonuses cost)."""
    return ledger_queries.balance(ledger.system_account("bonus_expense", currency).id).posted


def as_message(row: OutboxEvent) -> Message:
    """The bus message an outbox row becomes once relayed."""
    return Message(
        event_id=str(row.id),
        stream=row.stream,
        type=row.type,
        payload=row.payload,
        occurred_at=row.occurred_at.isoformat(),
    )


def outbox(*types: str) -> list[Message]:
    """The outbox events of ``types``, oldest first, as bus messages."""
    rows = OutboxEvent.objects.filter(type__in=types).order_by("occurred_at", "id")
    return [as_message(r) for r in rows]


def consume(name: str, messages: list[Message]) -> None:
    """Hand ``messages`` to the registered consumer ``name`` (as the runner would)."""
    autodiscover()[name].handler(messages)


_deal = itertools.count(50_000)


def deal_message(
    client_id: UUID,
    *,
    lots: float = 1.0,
    profit: int = 0,
    at: datetime | None = None,
    server: str = "sim",
    login: int = 7001,
    deal: int | None = None,
) -> Message:
    """A ``trading.deal_closed`` message in the trading module's shape (plus the client)."""
    at = at or datetime.now(UTC)
    payload = {
        "server": server,
        "login": login,
        "deal": deal or next(_deal),
        "position_id": 1,
        "symbol": "EURUSD",
        "action": 1,
        "entry": 1,
        "reason": 0,
        "volume": int(lots * 10_000),
        "volume_ext": 0,
        "volume_closed": int(lots * 10_000),
        "volume_closed_ext": 0,
        "profit": profit,
        "commission": 0,
        "storage": 0,
        "fee": 0,
        "currency_digits": 2,
        "time_msc": int(at.timestamp() * 1000),
        "client_id": str(client_id),
        "currency": "USD",
    }
    return Message(str(new_id()), "trading", "trading.deal_closed", payload, at.isoformat())
