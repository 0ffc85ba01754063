"""A race provoked on purpose: two workers handle the same event at the same time."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection, transaction

from brokerdesk.automations import services
from brokerdesk.automations.models import Run
from brokerdesk.compliance import services as compliance
from brokerdesk.trading import queries as trading_queries
from tests.automations.conftest import rule
from tests.automations.test_runs import OPEN_ACCOUNT, kyc_approved
from tests.clients.factories import individual

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_workers_on_the_same_event_open_one_account(platform):
    client = individual()
    for step in ("under_verification", "approved"):
        compliance.transition_kyc(client.pk, step, by="system:test", reason="t", provider="sumsub")
    rule("kyc.approved", [OPEN_ACCOUNT])
    event = kyc_approved(client.pk)
    barrier = threading.Barrier(2)
    outcomes: list[Any] = [None, None]

    def worker(i: int) -> None:
        try:
            barrier.wait()
            for attempt in range(3):  # the consumer runner retries a batch that failed
                try:
                    with transaction.atomic():
                        outcomes[i] = services.apply_rules(event)
                    return
                except Exception as exc:
                    outcomes[i] = exc
                    if attempt == 2:
                        raise
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert all(isinstance(o, list) for o in outcomes), outcomes
    assert sorted(len(o) for o in outcomes) == [0, 1]
    assert Run.objects.count() == 1
    assert len(trading_queries.accounts_of(client.pk)) == 1 and len(platform.users) == 1
