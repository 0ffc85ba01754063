"""Fixtures for the automations tests: clients, a fake platform, events through the bus."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from brokerdesk.automations import services
from brokerdesk.compliance import services as compliance
from brokerdesk.core.bus.base import Bus
from brokerdesk.core.bus.factory import get_bus
from brokerdesk.core.consumers import ConsumerRunner, autodiscover
from brokerdesk.core.events import DomainEvent, emit
from brokerdesk.core.ids import new_id
from brokerdesk.core.relay import relay_all
from brokerdesk.payments import services as payments
from brokerdesk.trading.platform.port import NewUser, PlatformUser
from tests.payments.conftest import local_psp  # noqa: F401 - a fixture the tests use

_seq = itertools.count(1)
ADMIN = "system:test-admin"


@pytest.fixture(autouse=True)
def bundled_rule_sets(request: pytest.FixtureRequest) -> None:
    """The bundled rule sets (compliance's policy needs them)."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None:
        return
    request.getfixturevalue("transactional_db" if marker.kwargs.get("transaction") else "db")
    compliance.load_bundled_rule_sets()


@pytest.fixture(autouse=True)
def default_payment_rules() -> Iterator[None]:
    """Each test starts from the default payment rules."""
    previous = payments.set_rules()
    yield
    payments.RULES = previous


class FakePort:
    """A platform server in memory: enough of ``PlatformPort`` for the account actions."""

    def __init__(self, server_name: str = "sim") -> None:
        self.server_name = server_name
        self.users: dict[int, PlatformUser] = {}
        self.fail_with: Exception | None = None
        self._logins = itertools.count(70_001)

    def connect(self) -> None:
        """Nothing to connect."""

    def disconnect(self) -> None:
        """Nothing to disconnect."""

    def is_connected(self) -> bool:
        return True

    def _check(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    def create_user(self, new: NewUser) -> PlatformUser:
        self._check()
        user = PlatformUser(next(self._logins), new.group, new.leverage, 1, new.name, new.email)
        self.users[user.login] = user
        return user

    def get_user(self, login: int) -> PlatformUser:
        self._check()
        return self.users[login]

    def change_group(self, login: int, group: str) -> PlatformUser:
        self._check()
        old = self.users[login]
        self.users[login] = PlatformUser(login, group, old.leverage, old.rights, old.name)
        return self.users[login]


@pytest.fixture
def platform(monkeypatch: pytest.MonkeyPatch) -> FakePort:
    """The fake platform behind ``trading.services.connected_port`` (server ``sim``)."""
    from brokerdesk.trading import services as trading

    port = FakePort()
    monkeypatch.setattr(trading, "connected_port", lambda server: port)
    return port


@dataclass(frozen=True)
class _StandIn(DomainEvent):
    data: dict[str, Any]

    def payload(self) -> dict[str, Any]:
        return dict(self.data)


def stand_in(event_type: str, stream: str, **payload: Any) -> DomainEvent:
    """An event another module emits, built here (its payload as the contract says)."""
    cls = type("StandIn", (_StandIn,), {"type": event_type, "stream": stream})
    return cls(data=payload)  # type: ignore[call-arg]


class Pipeline:
    """The real event path: outbox → relay → bus → the automations consumer."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.runner = ConsumerRunner(bus, autodiscover()["automations.run_rules"])

    def run(self) -> int:
        """Relay what was emitted and let the consumer handle it; return how many it took."""
        relay_all(self.bus)
        return self.runner.drain().processed

    def send(self, *events: DomainEvent) -> int:
        """Emit ``events`` (as their modules would) and run them through."""
        emit(*events)
        return self.run()


@pytest.fixture
def pipeline() -> Pipeline:
    """The configured bus (outbox or Redis Streams) under a fresh stream prefix."""
    return Pipeline(get_bus(prefix=f"t{uuid.uuid4().hex[:8]}"))


def rule(trigger: str, actions: list[dict[str, Any]], conditions: Any = None, **kw: Any) -> Any:
    """Save a rule as an administrator would."""
    return services.save_rule(
        name=kw.pop("name", f"Rule {next(_seq)}"),
        trigger=trigger,
        conditions=conditions or [],
        actions=actions,
        by=kw.pop("by", ADMIN),
        **kw,
    )


def event_id() -> str:
    """A fresh event id."""
    return str(new_id())
