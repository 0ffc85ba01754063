"""Races provoked on purpose: concurrent deals (and a deal against a withdrawal) never
release or remove more than the bonus holds."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from brokerdesk.bonuses import services
from brokerdesk.bonuses.consumers import deal_facts
from brokerdesk.bonuses.models import Bonus, BonusStatus
from tests.bonuses.conftest import FINANCE, bucket, campaign, client, deal_message, fund

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def rule_sets() -> None:
    from brokerdesk.compliance import services as compliance

    compliance.load_bundled_rule_sets()


def run_together(*jobs: Callable[[], Any]) -> list[Any]:
    """Start the jobs at the same moment on their own connections; retry as the runner does."""
    barrier = threading.Barrier(len(jobs))
    outcomes: list[Any] = [None] * len(jobs)

    def worker(i: int) -> None:
        try:
            barrier.wait()
            for _attempt in range(5):
                try:
                    outcomes[i] = jobs[i]()
                    return
                except Exception as exc:  # a lock timeout or serialisation failure: retry
                    outcomes[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return outcomes


def granted(client_id: Any, amount: int) -> Bonus:
    c = campaign(trigger="manual", fixed_amount=amount, unlock_per_lot=500)
    outcome = services.grant_manual(
        campaign_id=c.id,
        client_id=client_id,
        amount=amount,
        reason="race",
        by=FINANCE,
        request_key=f"race-{c.id}",
    )
    return Bonus.objects.get(pk=outcome.bonus_id)


def test_two_deals_at_once_never_unlock_more_than_was_granted():
    alice = client()
    bonus = granted(alice, 1_000)
    deals = [deal_facts(deal_message(alice, lots=2)) for _ in range(4)]  # each would unlock all

    outcomes = run_together(*(lambda d=d: services.apply_deal(d) for d in deals))

    assert all(isinstance(o, int) for o in outcomes), outcomes
    bonus.refresh_from_db()
    assert sum(outcomes) == 1_000 and bonus.unlocked == 1_000
    assert bonus.status == BonusStatus.COMPLETED
    assert bucket(alice, "cash") == 1_000 and bucket(alice, "bonus") == 0


def test_a_deal_and_a_withdrawal_at_once_never_move_more_than_the_bonus():
    alice = client()
    fund(alice, 10_000)
    bonus = granted(alice, 1_000)
    deal = deal_facts(deal_message(alice, lots=1))  # would unlock 500

    outcomes = run_together(
        lambda: services.apply_deal(deal),
        lambda: services.forfeit_for_withdrawal(
            client_id=alice, currency="USD", amount=5_000, withdrawal_id="race-w"
        ),
    )

    assert all(isinstance(o, int) for o in outcomes), outcomes
    bonus.refresh_from_db()
    assert bonus.unlocked + bonus.forfeited == 1_000 and sum(outcomes) == 1_000
    assert bucket(alice, "bonus") == 0
    assert bucket(alice, "cash") == 10_000 + bonus.unlocked
