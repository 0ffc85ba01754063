"""Factories for ledger tests."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from brokerdesk.ledger import services
from brokerdesk.ledger.models import LedgerAccount

_counter = itertools.count()


def unique(prefix: str = "k") -> str:
    """A fresh idempotency key or owner id."""
    return f"{prefix}-{next(_counter)}-{services.new_id().hex[:8]}"


@pytest.fixture
def wallet() -> Callable[..., LedgerAccount]:
    """A new client's wallet account (may not go negative)."""

    def make(currency: str = "USD", bucket: str = "cash") -> LedgerAccount:
        return services.wallet_account(unique("client"), currency, bucket)

    return make


@pytest.fixture
def psp() -> Callable[[str], LedgerAccount]:
    """The sandbox PSP's clearing account in a currency."""

    def make(currency: str = "USD") -> LedgerAccount:
        return services.system_account("psp_clearing", currency, qualifier="sandbox")

    return make


def deposit(account: LedgerAccount, amount: int, key: str | None = None) -> services.TransferResult:
    """Credit a wallet from the PSP clearing account."""
    clearing = services.system_account("psp_clearing", account.currency, qualifier="sandbox")
    return services.transfer(
        key or unique("dep"),
        debit_account=clearing.id,
        credit_account=account.id,
        amount=amount,
        currency=account.currency,
        kind="deposit",
    )


def withdraw(
    account: LedgerAccount, amount: int, key: str | None = None
) -> services.TransferResult:
    """Debit a wallet to the PSP clearing account."""
    clearing = services.system_account("psp_clearing", account.currency, qualifier="sandbox")
    return services.transfer(
        key or unique("wd"),
        debit_account=account.id,
        credit_account=clearing.id,
        amount=amount,
        currency=account.currency,
        kind="withdrawal",
    )
