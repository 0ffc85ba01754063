"""Fixtures for the web surfaces: bundled rule sets, verified users, funded wallets."""

from __future__ import annotations

import itertools
from typing import Any
from uuid import UUID

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.core.cache import cache

from brokerdesk.compliance import services as compliance_services
from brokerdesk.ledger import services as ledger

_seq = itertools.count(1)
PASSWORD = "Quiet-Harbour-4711"


@pytest.fixture(autouse=True)
def bundled_rule_sets(request: pytest.FixtureRequest) -> None:
    """The bundled rule sets (a migration loads them; a transactional flush removes them)."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None:
        return
    request.getfixturevalue("transactional_db" if marker.kwargs.get("transaction") else "db")
    compliance_services.load_bundled_rule_sets()


@pytest.fixture(autouse=True)
def fresh_rate_limits() -> None:
    """allauth counts attempts in the cache: start every test from zero."""
    cache.clear()


def verified_user(*, email: str | None = None, password: str = PASSWORD, **extra: Any) -> Any:
    """A user whose e-mail address is verified, so allauth lets them sign in."""
    n = next(_seq)
    email = email or f"staff{n}@example.com"
    user = get_user_model().objects.create_user(
        username=f"user{n}", email=email, password=password, **extra
    )
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    return user


def fund(client_id: UUID | str, amount: int, currency: str = "USD", bucket: str = "cash") -> None:
    """Credit a client's wallet bucket from the sandbox PSP clearing account."""
    wallet = ledger.wallet_account(client_id, currency, bucket)
    clearing = ledger.system_account("psp_clearing", currency, qualifier="sandbox")
    ledger.transfer(
        f"test-fund-{client_id}-{currency}-{bucket}-{next(_seq)}",
        debit_account=clearing.id,
        credit_account=wallet.id,
        amount=amount,
        currency=currency,
        kind="deposit",
    )
