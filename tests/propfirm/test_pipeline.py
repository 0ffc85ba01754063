"""Through the real pipeline (outbox → relay → bus → the registered consumer), and races
provoked on purpose: concurrent purchases pay once and never overdraw."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from brokerdesk.core import clock
from brokerdesk.core.bus.outbox import OutboxBus
from brokerdesk.core.consumers import ConsumerRunner, autodiscover
from brokerdesk.core.events import emit
from brokerdesk.core.relay import relay_all
from brokerdesk.propfirm import services
from brokerdesk.propfirm.models import Challenge, PhaseAccount, PhaseDeal, PhaseStatus
from brokerdesk.trading.events import DealClosed
from tests.propfirm.conftest import (
    EVALUATION,
    FUNDED,
    T0,
    Platform,
    deal,
    make_product,
    msc,
    started_account,
    verified_client,
    wallet_cash,
)

pytestmark = pytest.mark.django_db(transaction=True)


def closed(payload: dict[str, Any]) -> DealClosed:
    """The ``trading.deal_closed`` event trading's ingest would emit for ``payload``."""
    return DealClosed(**payload)


def test_closed_deals_through_the_bus_pass_the_phase_once_and_the_platform_hears(
    platform: Platform,
):
    with clock.frozen(T0):
        _, account = started_account(platform, EVALUATION, FUNDED)
    assert account.login is not None
    payloads = [deal(account, 400_00, msc(T0) + i) for i in range(2)]
    bus = OutboxBus(poll_interval_ms=20)
    runner = ConsumerRunner(bus, autodiscover()["propfirm.evaluate_deals"])
    relay_all(bus)
    runner.drain()  # the account-opened events of the set-up

    with clock.frozen(T0 + timedelta(hours=1)):
        emit(closed(payloads[1]))
        relay_all(bus)
        first = runner.drain()
        emit(closed(payloads[1]), closed(payloads[0]))  # a repeat, and the earlier deal late
        relay_all(bus)
        second = runner.drain()

    assert first.processed == 1 and second.processed == 2 and not second.dead_lettered
    assert PhaseDeal.objects.filter(account=account).count() == 2
    passed = PhaseAccount.objects.get(pk=account.pk)
    assert passed.status == PhaseStatus.PASSED and passed.figures["profit"] == 800_00
    assert not passed.platform_pending  # told after the commit: trading is off
    assert not platform.trade_allowed(account.login)
    funded = PhaseAccount.objects.get(challenge=passed.challenge, phase_index=1)
    assert funded.status == PhaseStatus.ACTIVE and platform.trade_allowed(funded.login or 0)


def _race(workers: int, work: Any) -> list[Any]:
    barrier = threading.Barrier(workers)
    outcomes: list[Any] = [None] * workers

    def run(i: int) -> None:
        try:
            barrier.wait()
            outcomes[i] = work(i)
        except Exception as exc:
            outcomes[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return outcomes


def test_the_same_purchase_sent_four_times_at_once_pays_once():
    product = make_product()
    client = verified_client(cash=500_00)

    outcomes = _race(
        4,
        lambda i: services.purchase_challenge(
            client, product.pk, request_id="same-click", by="system:test"
        ),
    )

    assert all(isinstance(o, Challenge) for o in outcomes), outcomes
    assert len({o.pk for o in outcomes}) == 1
    assert wallet_cash(client) == 500_00 - 99_00


def test_concurrent_purchases_never_overdraw_the_wallet():
    product = make_product()
    client = verified_client(cash=2 * 99_00 + 50_00)

    outcomes = _race(
        4,
        lambda i: services.purchase_challenge(
            client, product.pk, request_id=f"click-{i}", by="system:test"
        ),
    )

    bought = [o for o in outcomes if isinstance(o, Challenge)]
    refused = [o for o in outcomes if not isinstance(o, Challenge)]
    assert len(bought) == 2 and len(refused) == 2, outcomes
    assert all(getattr(o, "code", "") == "insufficient_funds" for o in refused), refused
    assert wallet_cash(client) == 50_00
    assert Challenge.objects.filter(client_id=str(client)).count() == 2
