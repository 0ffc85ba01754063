"""Races provoked on purpose: concurrent commands on one client stay consistent."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from brokerdesk.compliance import queries, services
from brokerdesk.compliance.models import ClientFlag, KycTransition
from brokerdesk.core.errors import IllegalTransition
from brokerdesk.core.models import OutboxEvent
from tests.clients.factories import individual

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


def test_the_same_first_transition_raced_happens_once():
    alice = individual()

    results = race(
        6, lambda i: services.request_documents(alice.pk, by=f"system:w{i}", reason="race")
    )

    done = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, IllegalTransition)]
    assert len(done) == 1 and len(refused) == 5, results
    assert KycTransition.objects.filter(case__client_id=alice.pk).count() == 1
    assert OutboxEvent.objects.filter(type="kyc.documents_requested").count() == 1


def test_the_same_flag_raised_concurrently_is_opened_once():
    alice = individual()

    results = race(
        6, lambda i: services.raise_flag(alice.pk, "dispute", by="system:psp", reason=f"n{i}")
    )

    assert not [r for r in results if isinstance(r, Exception)], results
    assert len({r.id for r in results}) == 1
    assert ClientFlag.objects.filter(client_id=alice.pk).count() == 1
    assert queries.has_open_flag(alice.pk, "dispute")
