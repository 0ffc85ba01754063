"""Races provoked on purpose: two workers accrue the same deals at the same time."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from brokerdesk.core import clock
from brokerdesk.ledger import queries as ledger_queries
from brokerdesk.ledger import services as ledger
from brokerdesk.partners import accrual, attribution
from brokerdesk.partners.consumers import parse_batch
from brokerdesk.partners.models import Accrual, DealRecord
from tests.partners.conftest import T0, chain, deal_payload, message, plan_for, verified_client

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_workers_on_the_same_deals_pay_each_deal_once():
    with clock.frozen(T0) as c:
        master, sub = chain(2)
        plan_for(
            sub,
            {
                "symbol_groups": {"FX": ["EURUSD"]},
                "components": [{"type": "rebate", "rates": {"FX": 700}}],
                "overrides": [2500],
            },
        )
        client = verified_client()
        attribution.request_reassignment(client, sub.pk, by="system:test", reason="setup")
        c.advance(timedelta(hours=1))
        deals = parse_batch([message(deal_payload(client, at=c.current)) for _ in range(20)])
    barrier = threading.Barrier(2)
    outcomes: list[Any] = [None, None]

    def worker(i: int) -> None:
        try:
            barrier.wait()
            for attempt in range(3):  # what the consumer runner does after a failed batch
                try:
                    outcomes[i] = accrual.accrue_deals(deals)
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

    assert all(isinstance(o, accrual.AccrualReport) for o in outcomes), outcomes
    assert sorted(o.new_deals for o in outcomes) == [0, 20]
    assert DealRecord.objects.count() == 20
    assert Accrual.objects.count() == 40
    for ib, expected in ((sub, 20 * 525), (master, 20 * 175)):
        account = ledger.open_account("ib", str(ib.pk), "USD", "payable")
        assert ledger_queries.balance(account.id).posted == expected
