"""Fixtures and factories for the support tests: clients with a login, staff by role."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest

from brokerdesk.clients.models import Client
from brokerdesk.compliance import services as compliance
from brokerdesk.support import services
from brokerdesk.support.queries import TicketView
from tests.clients.factories import individual, user

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
_seq = itertools.count(1)


@pytest.fixture(autouse=True)
def bundled_rule_sets(request: pytest.FixtureRequest) -> None:
    """The bundled rule sets (registering a client needs them; a flush removes them)."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None:
        return
    request.getfixturevalue("transactional_db" if marker.kwargs.get("transaction") else "db")
    compliance.load_bundled_rule_sets()


def client_with_login(**overrides: Any) -> tuple[Client, Any]:
    """A registered client and the user that signs in as them."""
    login = user()
    n = next(_seq)
    client = individual(user=login, email=overrides.pop("email", f"support{n}@example.com"))
    return client, login


def staff(*roles: str) -> Any:
    """A staff user holding ``roles``."""
    return user(*roles)


def ticket_for(client: Client, by: Any, **overrides: Any) -> TicketView:
    """A ticket the client opened in the portal (fields overridable)."""
    data: dict[str, Any] = {
        "client_id": client.pk,
        "category": "withdrawals",
        "subject": "Where is my money?",
        "body": "I asked for a withdrawal two days ago.",
        "source": "portal",
        "by": by,
    }
    data.update(overrides)
    return services.open_ticket(**data)
