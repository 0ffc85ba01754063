"""Bonuses driven by the real payments events: a deposit grants, its redelivery grants
nothing more, a withdrawal before unlock forfeits as previewed, a chargeback forfeits."""

from __future__ import annotations

from typing import Any

import pytest

from brokerdesk.bonuses import queries
from brokerdesk.bonuses.models import Bonus, BonusStatus, GrantDecision
from brokerdesk.core.bus.outbox import OutboxBus
from brokerdesk.core.consumers import ConsumerRunner, autodiscover
from brokerdesk.core.models import OutboxEvent
from brokerdesk.core.relay import relay_all
from brokerdesk.payments import services as payments
from tests.bonuses.conftest import bucket, campaign, client, consume, outbox
from tests.payments.conftest import funded, local_psp  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db


class Row:
    """The deposit's client as ``funded`` expects it (an object with ``pk``)."""

    def __init__(self, pk: Any) -> None:
        self.pk = pk


def welcome(**terms: Any) -> Any:
    return campaign(
        deposit_methods=["sandbox"],
        kyc_states=["approved"],
        percent_bps=5_000,
        max_per_grant=100_000,
        **terms,
    )


def test_a_confirmed_deposit_grants_the_bonus_once_even_when_redelivered(local_psp):  # noqa: F811
    welcome(deposit_sequence="first")
    alice = client()
    funded(local_psp, Row(alice), 40_000)

    messages = outbox("deposit.confirmed")
    consume("bonuses.payments", messages)
    consume("bonuses.payments", messages)  # the bus delivers it again

    bonus = Bonus.objects.get(client_id=alice)
    assert bonus.amount == 20_000 and bonus.source == "deposit"
    assert bucket(alice, "bonus") == 20_000 and bucket(alice, "cash") == 40_000
    assert OutboxEvent.objects.filter(type="bonus.granted").count() == 1


def test_a_second_deposit_does_not_qualify_for_a_first_deposit_offer(local_psp):  # noqa: F811
    c = welcome(deposit_sequence="first")
    alice = client()
    funded(local_psp, Row(alice), 40_000)
    funded(local_psp, Row(alice), 30_000)

    consume("bonuses.payments", outbox("deposit.confirmed"))

    assert Bonus.objects.filter(client_id=alice).count() == 1
    refused = GrantDecision.objects.get(campaign=c, granted=False)
    assert refused.rule == "first_deposit_only"
    assert queries.decisions_of(alice)[0].rule == "first_deposit_only"


def test_a_client_where_bonuses_are_not_allowed_gets_none_and_support_sees_why(local_psp):  # noqa: F811
    welcome(jurisdictions=[])
    cy = client(jurisdiction="cysec", country="CY")
    funded(local_psp, Row(cy), 40_000)

    consume("bonuses.payments", outbox("deposit.confirmed"))

    assert not Bonus.objects.filter(client_id=cy).exists()
    decision = GrantDecision.objects.get(client_id=cy)
    assert decision.rule == "policy" and "CySEC" in decision.message


def test_a_withdrawal_before_unlock_forfeits_exactly_what_the_preview_said(local_psp):  # noqa: F811
    welcome()
    alice = client()
    deposit = funded(local_psp, Row(alice), 40_000)
    consume("bonuses.payments", outbox("deposit.confirmed"))
    preview = queries.forfeiture_preview(alice, "USD", 10_000)

    payments.request_withdrawal(
        alice,
        amount=10_000,
        currency="USD",
        method_id=deposit.method_id,
        request_id="wd-1",
        by=f"client:{alice}",
    )
    consume("bonuses.payments", outbox("withdrawal.requested"))

    bonus = Bonus.objects.get(client_id=alice)
    assert preview.forfeited == 20_000 and bonus.forfeited == preview.forfeited
    assert bonus.status == BonusStatus.FORFEITED and bucket(alice, "bonus") == 0
    why = queries.history_of(alice)[0]
    assert why.kind == "forfeited" and why.reason_code == "withdrawal"


def test_bonus_money_cannot_be_withdrawn_through_payments(local_psp):  # noqa: F811
    from brokerdesk.ledger.errors import InsufficientFunds

    welcome()
    alice = client()
    deposit = funded(local_psp, Row(alice), 40_000)
    consume("bonuses.payments", outbox("deposit.confirmed"))

    with pytest.raises(InsufficientFunds):
        payments.request_withdrawal(
            alice,
            amount=40_001,
            currency="USD",
            method_id=deposit.method_id,
            request_id="wd-2",
            by=f"client:{alice}",
        )
    assert bucket(alice, "bonus") == 20_000 and bucket(alice, "cash") == 40_000


def test_a_chargeback_forfeits_the_bonus_that_deposit_earned(local_psp):  # noqa: F811
    welcome()
    alice = client()
    deposit = funded(local_psp, Row(alice), 40_000)
    consume("bonuses.payments", outbox("deposit.confirmed"))

    payments.reverse_deposit(deposit.pk, by="system:psp", reason="chargeback cb_1")
    consume("bonuses.payments", outbox("deposit.reversed"))

    bonus = Bonus.objects.get(client_id=alice)
    assert bonus.status == BonusStatus.FORFEITED and bucket(alice, "bonus") == 0
    assert "chargeback cb_1" in queries.history_of(alice)[0].reason


def test_the_deposit_event_reaches_the_consumer_through_the_bus(local_psp):  # noqa: F811
    welcome()
    alice = client()
    funded(local_psp, Row(alice), 40_000)
    bus = OutboxBus(poll_interval_ms=20)
    runner = ConsumerRunner(bus, autodiscover()["bonuses.payments"])

    relay_all(bus)
    result = runner.drain()

    assert result.dead_lettered == 0 and result.processed >= 1
    assert bucket(alice, "bonus") == 20_000
