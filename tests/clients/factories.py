"""Factories for clients and staff users (shared by the clients and compliance tests)."""

from __future__ import annotations

import itertools
from datetime import date
from typing import Any

from django.contrib.auth import get_user_model

from brokerdesk.clients import services
from brokerdesk.clients.models import Client
from brokerdesk.staff.roles import grant_role

_seq = itertools.count(1)


def individual(**overrides: Any) -> Client:
    """A valid adult individual under the CySEC-like rule set, with overrides."""
    n = next(_seq)
    data: dict[str, Any] = {
        "email": f"person{n}@example.com",
        "first_name": "Maria",
        "last_name": f"Ioannou{n}",
        "date_of_birth": date(1990, 5, 17),
        "country": "CY",
        "jurisdiction": "cysec",
        "phone": "+357 22 123456",
        "by": "system:test",
    }
    data.update(overrides)
    return services.register_individual(**data)


def corporate(**overrides: Any) -> Client:
    """A valid company under the CySEC-like rule set, with overrides."""
    n = next(_seq)
    data: dict[str, Any] = {
        "email": f"company{n}@example.com",
        "company_name": f"Blue Harbour Trading {n} Ltd",
        "registration_number": f"HE{400000 + n}",
        "country": "CY",
        "jurisdiction": "cysec",
        "by": "system:test",
    }
    data.update(overrides)
    return services.register_corporate(**data)


def user(*roles: str, username: str | None = None) -> Any:
    """A user holding ``roles`` (none: a plain user, e.g. a client's login)."""
    account = get_user_model().objects.create_user(
        username=username or f"user{next(_seq)}", password=None
    )
    if roles:
        grant_role(account, *roles)
    return account
