"""AML monitoring: rules over deposits and withdrawals raise alerts that gather into cases."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from brokerdesk.compliance import queries, services
from brokerdesk.compliance.kyc import KycState
from brokerdesk.compliance.queries import may
from brokerdesk.core.errors import IllegalTransition, ValidationError
from brokerdesk.core.models import OutboxEvent
from tests.clients.factories import individual, user
from tests.compliance.test_kyc import bring_to

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 9, 1, 9, tzinfo=UTC)
_ids = itertools.count(1)


def tx(client, kind="deposit", amount=10_000, currency="EUR", at=T0, **kw):
    return services.record_transaction(
        f"evt-{next(_ids)}",
        client_id=client.pk,
        kind=kind,
        amount=amount,
        currency=currency,
        occurred_at=at,
        **kw,
    )


def rules_of(alerts):
    return sorted(a.rule for a in alerts)


def test_an_ordinary_deposit_raises_nothing():
    assert tx(individual()) == []


def test_a_large_deposit_raises_a_medium_alert_in_an_aml_case():
    alice = individual()

    [alert] = tx(alice, amount=1_000_000)

    assert (alert.rule, alert.severity) == ("large_deposit", "medium")
    [case] = queries.cases(client_id=alice.pk)
    assert (case.kind, case.status, alert.case_id) == ("aml", "open", case.id)
    assert OutboxEvent.objects.filter(type="aml.alert_raised").count() == 1
    assert not queries.has_open_flag(alice.pk, "aml_hold")


def test_the_same_event_delivered_twice_is_monitored_once():
    alice = individual()
    services.record_transaction(
        "psp-77",
        client_id=alice.pk,
        kind="deposit",
        amount=2_000_000,
        currency="EUR",
        occurred_at=T0,
    )
    again = services.record_transaction(
        "psp-77",
        client_id=alice.pk,
        kind="deposit",
        amount=2_000_000,
        currency="EUR",
        occurred_at=T0,
    )

    assert again == []
    assert len(queries.alerts_of(alice.pk)) == 1


def test_structuring_is_high_severity_holds_the_client_and_opens_an_aml_review():
    alice = individual()
    bring_to(alice.pk, KycState.APPROVED)
    raised = []
    for day in range(5):  # five deposits just under the 10,000.00 EUR threshold
        raised += tx(alice, amount=950_000, at=T0 + timedelta(days=day))

    assert "structuring" in rules_of(raised)
    assert queries.has_open_flag(alice.pk, "aml_hold")
    assert queries.kyc_status(alice.pk).state == "aml_review"
    assert may(alice.pk, "withdraw").reason_code == "flag_aml_hold"


def test_deposit_velocity_and_dormancy_break_are_low_severity():
    alice = individual()
    tx(alice, at=T0)
    tx(alice, at=T0 + timedelta(hours=2))
    assert rules_of(tx(alice, at=T0 + timedelta(hours=5))) == ["deposit_velocity"]

    assert rules_of(tx(alice, at=T0 + timedelta(days=200))) == ["dormancy_break"]


def test_withdrawing_most_of_recent_deposits_raises_an_alert():
    alice = individual()
    tx(alice, amount=500_000)
    assert tx(alice, kind="withdrawal", amount=100_000, at=T0 + timedelta(days=2)) == []

    [alert] = tx(alice, kind="withdrawal", amount=350_000, at=T0 + timedelta(days=3))
    assert alert.rule == "deposit_then_withdrawal"
    assert alert.details == {"deposited": 500_000, "withdrawn": 450_000}


def test_one_card_on_two_clients_alerts_and_holds_the_second():
    alice, bob = individual(), individual()
    assert tx(alice, method_fingerprint="card:4242-abcd") == []

    [alert] = tx(bob, method_fingerprint="card:4242-abcd")

    assert (alert.rule, alert.severity) == ("shared_payment_method", "high")
    assert queries.has_open_flag(bob.pk, "aml_hold")


def test_a_payer_name_unlike_the_clients_raises_a_third_party_alert():
    alice = individual(first_name="Maria", last_name="Ioannou")
    assert tx(alice, payer_name="IOANNOU MARIA") == []
    assert rules_of(tx(alice, payer_name="Global Trade FZE")) == ["third_party_payer"]


def test_an_investigator_notes_and_closes_the_case():
    officer = user("compliance_officer")
    alice = individual()
    tx(alice, amount=1_500_000)
    [case] = queries.cases(client_id=alice.pk)

    services.add_case_note(case.id, by=officer, text="Payslips requested")
    assert queries.cases(client_id=alice.pk)[0].status == "investigating"
    with pytest.raises(ValidationError):
        services.close_case(case.id, by=officer, outcome="meh", reason="x")
    services.close_case(case.id, by=officer, outcome="valuable_alert", reason="income documented")

    closed = queries.cases(client_id=alice.pk)[0]
    assert (closed.status, closed.outcome) == ("closed", "valuable_alert")
    assert [n[1] for n in closed.notes] == [
        "Payslips requested",
        "Closed (valuable_alert): income documented",
    ]
    with pytest.raises(IllegalTransition):
        services.close_case(case.id, by=officer, outcome="false_positive", reason="again")
    tx(alice, amount=1_500_000, at=T0 + timedelta(days=1))  # a new alert opens a new case
    assert [c.status for c in queries.cases(client_id=alice.pk)] == ["closed", "open"]


def test_thresholds_come_from_the_rule_set():
    seychelles = individual(jurisdiction="fsa-sc", country="ZA", phone="")
    assert tx(seychelles, amount=999_999, currency="USD") == []
    assert rules_of(tx(seychelles, amount=1_000_000, currency="USD")) == ["large_deposit"]


def test_bad_transactions_are_refused():
    alice = individual()
    with pytest.raises(ValidationError):
        tx(alice, kind="transfer")
    with pytest.raises(ValidationError):
        tx(alice, amount=10.5)
