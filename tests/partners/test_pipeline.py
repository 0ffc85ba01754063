"""Deals through the real pipeline: outbox → relay → bus → the registered consumer → wallet."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

import pytest

from brokerdesk.core import clock
from brokerdesk.core.bus.outbox import OutboxBus
from brokerdesk.core.consumers import ConsumerRunner, autodiscover
from brokerdesk.core.events import DomainEvent, emit
from brokerdesk.core.models import ProcessedEvent
from brokerdesk.core.relay import relay_all
from brokerdesk.ledger import queries as ledger_queries
from brokerdesk.ledger import services as ledger
from brokerdesk.partners import accrual, attribution
from brokerdesk.partners.models import Accrual
from tests.partners.conftest import T0, deal_payload, make_ib, plan_for, verified_client

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass(frozen=True)
class DealClosedStandIn(DomainEvent):
    """``trading.deal_closed`` as the trading module will emit it (built here, not imported)."""

    type: ClassVar[str] = "trading.deal_closed"
    stream: ClassVar[str] = "trading"
    data: dict[str, Any]

    def payload(self) -> dict[str, Any]:
        return dict(self.data)


def test_closed_deals_flow_through_the_bus_to_the_ib_wallet_once():
    with clock.frozen(T0) as c:
        ib = make_ib()
        plan_for(ib)
        client = verified_client()
        attribution.request_reassignment(client, ib.pk, by="system:test", reason="setup")
        c.advance(timedelta(hours=1))
        payloads = [deal_payload(client, at=c.current, volume=20_000) for _ in range(3)]
    bus = OutboxBus(poll_interval_ms=20)
    runner = ConsumerRunner(bus, autodiscover()["partners.accrue_deals"])

    emit(*(DealClosedStandIn(p) for p in payloads))
    relay_all(bus)
    first = runner.drain()
    emit(DealClosedStandIn(payloads[0]))  # the bridge sends one deal again
    relay_all(bus)
    second = runner.drain()

    assert first.processed == 3 and first.dead_lettered == 0
    assert second.processed == 1 and Accrual.objects.count() == 3
    assert ProcessedEvent.objects.filter(consumer="partners.accrue_deals").count() == 4
    ids = list(Accrual.objects.values_list("pk", flat=True))
    accrual.approve(ids, by="system:test")
    accrual.make_payable(ids, by="system:test")
    accrual.pay_ib(ib.pk, by="system:test", request_key="run-1")
    wallet = ledger.open_account("ib", str(ib.pk), "USD", "cash")
    assert ledger_queries.balance(wallet.id).posted == 3 * 2 * 700
