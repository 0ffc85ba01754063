"""Fixtures for the propfirm tests: a platform (the MT5 adapter over the in-repo fake of the
``MT5Manager`` package, the simulator's engine behind it), verified clients with money, and
products."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from brokerdesk.compliance import services as compliance
from brokerdesk.compliance.kyc import KycState
from brokerdesk.ledger import queries as ledger_queries
from brokerdesk.ledger import services as ledger
from brokerdesk.propfirm import services
from brokerdesk.propfirm.models import PhaseAccount, Product
from brokerdesk.trading.platform.mt5_adapter import MT5Adapter
from brokerdesk.trading.simulator.engine import Engine
from tests.clients.factories import individual
from tests.trading.fakes import mt5manager as fake_mt5

ADDRESS = "10.9.9.9:443"
SERVER = "sim"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY_MS = 86_400_000
_seq = itertools.count(1)

EVALUATION: dict[str, Any] = {
    "name": "Evaluation",
    "daily_loss_bps": 500,
    "max_loss_bps": 1000,
    "max_loss_mode": "static",
    "profit_target_bps": 800,
    "min_trading_days": 0,
}
VERIFICATION: dict[str, Any] = {
    "name": "Verification",
    "daily_loss_bps": 500,
    "max_loss_bps": 1000,
    "profit_target_bps": 500,
}
FUNDED: dict[str, Any] = {"name": "Funded", "daily_loss_bps": 500, "max_loss_bps": 1000}


@pytest.fixture(autouse=True)
def bundled_rule_sets(request: pytest.FixtureRequest) -> None:
    """The bundled rule sets (compliance's policy needs them)."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None:
        return
    request.getfixturevalue("transactional_db" if marker.kwargs.get("transaction") else "db")
    compliance.load_bundled_rule_sets()


class Platform:
    """The port propfirm talks to, plus the levers of the server behind it."""

    def __init__(self, engine: Engine, port: MT5Adapter) -> None:
        self.engine = engine
        self.port = port

    def trade_allowed(self, login: int) -> bool:
        """What the platform says about the login's right to trade."""
        return self.port.get_user(login).trade_enabled

    def balance(self, login: int) -> int:
        """The login's balance on the platform (minor units)."""
        return self.port.account_state(login).balance


@pytest.fixture
def platform() -> Iterator[Platform]:
    engine = Engine(name="propfirm-fake", seed=11)
    fake_mt5.SERVERS[ADDRESS] = engine
    port = MT5Adapter(SERVER, ADDRESS, 1001, "Manager#1", module=fake_mt5)
    port.connect()
    services.set_port_resolver(lambda server: port)
    try:
        yield Platform(engine, port)
    finally:
        services.set_port_resolver(None)
        port.disconnect()
        fake_mt5.SERVERS.pop(ADDRESS, None)


def verified_client(cash: int = 0, currency: str = "USD") -> UUID:
    """A registered client whose KYC is approved, with ``cash`` in the wallet."""
    client = individual()
    for step in (KycState.UNDER_VERIFICATION, KycState.APPROVED):
        compliance.transition_kyc(
            client.pk, step, by="system:test", reason="test", provider="sumsub"
        )
    if cash:
        fund(client.pk, cash, currency)
    return client.pk


def fund(client_id: UUID | str, amount: int, currency: str = "USD") -> None:
    """Credit the client's wallet cash from the sandbox PSP clearing account."""
    ledger.transfer(
        f"test-fund-{client_id}-{next(_seq)}",
        debit_account=ledger.system_account("psp_clearing", currency, qualifier="sandbox").id,
        credit_account=ledger.wallet_account(client_id, currency).id,
        amount=amount,
        currency=currency,
        kind="deposit",
    )


def wallet_cash(client_id: UUID | str, currency: str = "USD") -> int:
    """Posted balance of the client's wallet cash."""
    return ledger_queries.balance(ledger.wallet_account(client_id, currency).id).posted


def make_product(*phases: dict[str, Any], **fields: Any) -> Product:
    """A product with ``phases`` (default: evaluation → verification → funded)."""
    values: dict[str, Any] = {
        "code": f"challenge-{next(_seq)}",
        "name": "10K Challenge",
        "price": 99_00,
        "currency": "USD",
        "account_size": 10_000_00,
        "profit_split_bps": 8000,
        "server": SERVER,
        "platform_group": "demo\\standard",
        "phases": list(phases) or [EVALUATION, VERIFICATION, FUNDED],
    }
    values.update(fields)
    return services.create_product(by="system:test", **values)


def started_account(
    platform: Platform, *phases: dict[str, Any], **fields: Any
) -> tuple[UUID, PhaseAccount]:
    """A client who bought a product and whose first phase account is open and funded."""
    product = make_product(*phases, **fields)
    client = verified_client(cash=product.price)
    challenge = services.purchase_challenge(
        client, product.pk, request_id=f"buy-{next(_seq)}", by="system:test"
    )
    account = PhaseAccount.objects.get(challenge=challenge, phase_index=0)
    return client, services.open_phase_account(account.pk, port=platform.port)


def deal(account: PhaseAccount, pnl: int, at_msc: int, ticket: int | None = None) -> dict[str, Any]:
    """A ``trading.deal_closed`` payload for ``account`` with ``pnl`` of profit."""
    return {
        "server": account.server,
        "login": account.login,
        "deal": ticket if ticket is not None else 10_000_000 + next(_seq),
        "position_id": 1,
        "symbol": "EURUSD",
        "action": 1,
        "entry": 1,
        "reason": 0,
        "volume": 10_000,
        "volume_ext": 0,
        "volume_closed": 0,
        "volume_closed_ext": 0,
        "profit": pnl,
        "commission": 0,
        "storage": 0,
        "fee": 0,
        "currency_digits": 2,
        "time_msc": at_msc,
    }


def msc(moment: datetime) -> int:
    """A datetime as platform milliseconds."""
    return int(moment.timestamp() * 1000)
