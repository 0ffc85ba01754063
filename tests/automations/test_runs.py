"""Runs: once per (rule, event), audited; failures queue up for a retry or a person."""

from __future__ import annotations

from datetime import timedelta

import pytest

from brokerdesk.automations import queries, services
from brokerdesk.automations.models import Run, RunStatus
from brokerdesk.core import clock
from brokerdesk.core.errors import IllegalTransition, PermissionDenied, ValidationError
from brokerdesk.core.models import AuditEntry, OutboxEvent
from brokerdesk.core.relay import to_message
from brokerdesk.trading import queries as trading_queries
from brokerdesk.trading.platform.port import PlatformConnectionError
from tests.automations.conftest import event_id, rule, stand_in
from tests.clients.factories import individual, user

pytestmark = pytest.mark.django_db

OPEN_ACCOUNT = {"action": "create_trading_account", "params": {"server": "sim", "group": "real"}}


def kyc_approved(client_id: object, **extra: object) -> services.Event:
    payload = {"client_id": str(client_id), "from_state": "under_verification"}
    payload.update({"to_state": "approved", "actor": "system:test", "reason": "ok", **extra})
    return services.Event(id=event_id(), type="kyc.approved", payload=payload)


@pytest.fixture
def approved_client():
    from brokerdesk.compliance import services as compliance

    client = individual()
    for step in ("under_verification", "approved"):
        compliance.transition_kyc(client.pk, step, by="system:test", reason="t", provider="sumsub")
    return client


def test_a_redelivered_event_runs_each_rule_once(platform, approved_client):
    opening = rule("kyc.approved", [OPEN_ACCOUNT])
    event = kyc_approved(approved_client.pk)

    first = services.apply_rules(event)
    again = services.apply_rules(event)

    assert len(first) == 1 and again == []
    assert Run.objects.filter(rule=opening).count() == 1
    assert len(platform.users) == 1 and len(trading_queries.accounts_of(approved_client.pk)) == 1


def test_the_bus_delivering_a_message_twice_changes_nothing_more(
    pipeline, platform, approved_client
):
    rule("kyc.approved", [OPEN_ACCOUNT])
    pipeline.run()  # the real kyc.approved of the fixture
    row = OutboxEvent.objects.filter(type="kyc.approved").latest("occurred_at")

    pipeline.bus.publish([to_message(row)])  # the same event id again
    pipeline.run()

    assert Run.objects.count() == 1 and len(platform.users) == 1


def test_every_run_that_acts_is_audited_with_conditions_changes_and_overriders(
    platform, approved_client
):
    opening = rule(
        "kyc.approved",
        [OPEN_ACCOUNT],
        [{"field": "client.kyc_state", "op": "eq", "value": "approved"}],
    )
    [run] = services.apply_rules(kyc_approved(approved_client.pk))

    entry = AuditEntry.objects.get(object_type="automation_run", object_id=str(run.id))
    assert entry.actor == "system:automations" and entry.action == "automations.run"
    after = entry.after
    assert after["rule_id"] == str(opening.id) and after["rule_version"] == 1
    assert after["event"]["type"] == "kyc.approved"
    assert after["conditions"] == [
        {
            "field": "client.kyc_state",
            "op": "eq",
            "value": "approved",
            "actual": "approved",
            "result": True,
        }
    ]
    assert after["results"][0]["changes"]["login"] in platform.users
    assert after["override_roles"] == ["dealing"]
    assert OutboxEvent.objects.filter(type="automation.ran", aggregate_id=str(opening.id)).exists()


def test_a_rule_never_reacts_to_its_own_change(platform, approved_client):
    opening = rule("kyc.approved", [OPEN_ACCOUNT])
    own = kyc_approved(approved_client.pk, actor=services.rule_actor(opening.id))
    assert services.apply_rules(own) == []
    assert platform.users == {}


def test_a_failing_action_lands_in_the_exceptions_queue_and_a_retry_finishes_it(
    platform, approved_client
):
    opening = rule("kyc.approved", [OPEN_ACCOUNT])
    platform.fail_with = PlatformConnectionError("manager link down")

    [run] = services.apply_rules(kyc_approved(approved_client.pk))

    assert run.status == RunStatus.FAILED and "manager link down" in run.error
    assert run.next_retry_at is not None
    assert [r.id for r in queries.exceptions()] == [run.id]
    assert trading_queries.accounts_of(approved_client.pk) == []  # nothing half-written
    with pytest.raises(PermissionDenied):
        services.retry_run(run.id, by=user("support"))

    platform.fail_with = None
    retried = services.retry_run(run.id, by=user("dealing"))

    assert retried.status == RunStatus.SUCCEEDED and retried.attempts == 2
    assert queries.exceptions() == [] and len(trading_queries.accounts_of(approved_client.pk)) == 1
    actions = AuditEntry.objects.filter(object_id=str(run.id)).order_by("seq")
    assert [(a.action, a.after["status"]) for a in actions] == [
        ("automations.run", "failed"),
        ("automations.retry", "succeeded"),
    ]
    assert Run.objects.filter(rule=opening).count() == 1


def test_a_retry_repeats_only_the_actions_not_done(platform, approved_client):
    rule(
        "kyc.approved",
        [
            OPEN_ACCOUNT,
            {"action": "notify", "params": {"kind": "bonus_granted", "recipient": "ib"}},
        ],
    )
    [run] = services.apply_rules(kyc_approved(approved_client.pk))
    assert [r["status"] for r in run.results] == ["done", "failed"]
    assert "carries no ib_id" in run.results[1]["error"]

    again = services.retry_run(run.id, by="system:automations:retry")

    assert [r["status"] for r in again.results] == ["done", "failed"]
    assert len(platform.users) == 1  # the account was not opened a second time


def test_the_manual_fallback_resolves_a_run_with_a_note(platform, approved_client):
    rule("kyc.approved", [OPEN_ACCOUNT])
    platform.fail_with = PlatformConnectionError("manager link down")
    [run] = services.apply_rules(kyc_approved(approved_client.pk))
    dealer = user("dealing")

    with pytest.raises(ValidationError) as no_note:
        services.handle_run(run.id, by=dealer, note="  ")
    assert no_note.value.field == "note"
    with pytest.raises(PermissionDenied):
        services.handle_run(run.id, by=user("partner_manager"), note="done")

    handled = services.handle_run(run.id, by=dealer, note="Opened login 90001 by hand.")

    assert handled.status == RunStatus.HANDLED and handled.next_retry_at is None
    assert handled.handled_by == f"user:{dealer.pk}"
    assert queries.exceptions() == []
    entry = AuditEntry.objects.filter(object_id=str(run.id)).latest("seq")
    assert (entry.action, entry.reason) == ("automations.handled", "Opened login 90001 by hand.")
    with pytest.raises(IllegalTransition):
        services.retry_run(run.id, by=dealer)


def test_the_retry_job_retries_due_runs_and_then_leaves_them_to_people(platform, approved_client):
    rule("kyc.approved", [OPEN_ACCOUNT])
    platform.fail_with = PlatformConnectionError("down")
    [run] = services.apply_rules(kyc_approved(approved_client.pk))

    assert services.retry_due(now=clock.now()) == 0  # not due yet
    later = clock.now() + timedelta(hours=1)
    assert services.retry_due(now=later) == 1
    assert services.retry_due(now=later) == 1
    final = Run.objects.get(pk=run.id)
    assert final.attempts == services.AUTO_RETRIES and final.next_retry_at is None
    assert services.retry_due(now=later + timedelta(days=1)) == 0
    assert final.status == RunStatus.FAILED  # waits in the queue for a person


def test_an_event_value_of_the_wrong_type_fails_the_run_visibly(approved_client):
    rule(
        "deposit.confirmed",
        [{"action": "notify", "params": {"kind": "deposit_received"}}],
        [{"field": "event.amount", "op": "gte", "value": 100}],
    )
    event = services.Event(
        id=event_id(),
        type="deposit.confirmed",
        payload={"client_id": str(approved_client.pk), "amount": "lots", "currency": "USD"},
    )
    [run] = services.apply_rules(event)
    assert run.status == RunStatus.FAILED and "needs a whole number" in run.error
    assert run.next_retry_at is None


def test_disabled_rules_do_not_run(pipeline, approved_client):
    quiet = rule("aml.alert_raised", [{"action": "notify", "params": {"kind": "bonus_granted"}}])
    services.set_enabled(quiet.id, False, by="system:test")
    pipeline.send(
        stand_in(
            "aml.alert_raised", "compliance", client_id=str(approved_client.pk), severity="high"
        )
    )
    assert Run.objects.count() == 0


def test_a_misconfigured_run_retried_by_hand_stays_failed_without_crashing(approved_client):
    rule(
        "deposit.confirmed",
        [{"action": "notify", "params": {"kind": "deposit_received"}}],
        [{"field": "event.amount", "op": "gte", "value": 100}],
    )
    payload = {"client_id": str(approved_client.pk), "amount": "lots", "currency": "USD"}
    [run] = services.apply_rules(services.Event(event_id(), "deposit.confirmed", payload))

    again = services.retry_run(run.id, by=user("admin"))

    assert again.status == RunStatus.FAILED and again.attempts == 2
    assert again.next_retry_at is None and "whole number" in again.error


def test_a_client_fact_not_readable_yet_is_retried_then_left_to_people():
    rule(
        "deposit.confirmed",
        [{"action": "notify", "params": {"kind": "deposit_received"}}],
        [{"field": "client.country", "op": "eq", "value": "CY"}],
    )
    payload = {"client_id": "01a21ad8-d9dc-7121-b8d5-8d28cce225f5", "amount": 1, "currency": "USD"}
    [run] = services.apply_rules(services.Event(event_id(), "deposit.confirmed", payload))
    assert run.status == RunStatus.FAILED and run.next_retry_at is not None

    later = clock.now() + timedelta(hours=1)
    while services.retry_due(now=later):
        later += timedelta(hours=1)

    final = Run.objects.get(pk=run.id)
    assert final.status == RunStatus.FAILED and final.attempts == services.AUTO_RETRIES
    assert final.next_retry_at is None and "client_not_found" in final.error
