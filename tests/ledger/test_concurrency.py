"""Races provoked on purpose with real threads, each on its own database connection."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from brokerdesk.core.errors import DomainError
from brokerdesk.ledger import errors, queries
from brokerdesk.ledger.models import Transfer

from .conftest import deposit, unique, withdraw

pytestmark = pytest.mark.django_db(transaction=True)


def race(workers: int, job: Callable[[int], Any]) -> list[Any]:
    """Run ``job(i)`` in ``workers`` threads released together; return results or errors."""
    barrier = threading.Barrier(workers)
    results: list[Any] = [None] * workers

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = job(i)
        except Exception as exc:  # collected and asserted on by the test
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_concurrent_withdrawals_never_overdraw_the_wallet(wallet):
    account = wallet()
    deposit(account, 1_000)

    results = race(12, lambda i: withdraw(account, 100))

    refused = [r for r in results if isinstance(r, errors.InsufficientFunds)]
    posted = [r for r in results if not isinstance(r, Exception)]
    unexpected = [r for r in results if isinstance(r, Exception) and r not in refused]
    assert not unexpected, unexpected
    assert len(posted) == 10 and len(refused) == 2
    assert queries.balance(account.id).posted == 0
    assert queries.replay_ledger().clean


def test_the_same_deposit_raced_from_many_threads_posts_once(wallet):
    account = wallet()
    key = unique("psp-evt")

    results = race(8, lambda i: deposit(account, 2_500, key=key))

    assert all(not isinstance(r, Exception) for r in results), results
    assert len({r.transfer_id for r in results}) == 1
    assert sum(1 for r in results if not r.replayed) == 1
    assert Transfer.objects.filter(idempotency_key=key).count() == 1
    assert queries.balance(account.id).posted == 2_500


def test_racing_post_and_void_of_one_pending_transfer_resolve_it_once(wallet):
    from brokerdesk.ledger import services

    account = wallet()
    deposit(account, 1_000)
    held = services.place_hold(unique(), account=account, amount=400, reason="race")

    def resolve(i: int) -> Any:
        if i % 2:
            return services.void_pending(held.transfer_id, unique())
        return services.post_pending(held.transfer_id, unique())

    results = race(6, resolve)

    winners = [r for r in results if not isinstance(r, Exception)]
    losers = [r for r in results if isinstance(r, errors.PendingResolved)]
    assert len(winners) == 1 and len(losers) == 5, results
    assert all(isinstance(r, DomainError) for r in results if isinstance(r, Exception))
    expected_available = 600 if winners[0].phase == "post_pending" else 1_000
    assert queries.balance(account.id).available == expected_available
    assert queries.replay_ledger().clean
