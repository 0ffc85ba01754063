"""Each action end to end: a real event through the bus, the rule, the other module's service."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest

from brokerdesk.automations.facts import risk_score
from brokerdesk.automations.models import Run, RunStatus
from brokerdesk.automations.services import rule_actor
from brokerdesk.compliance import services as compliance
from brokerdesk.core import clock
from brokerdesk.notifications.models import Notification
from brokerdesk.partners import accrual, attribution
from brokerdesk.partners.deals import parse_deal_closed
from brokerdesk.partners.models import Accrual
from brokerdesk.payments import queries as payment_queries
from brokerdesk.payments import services as payments
from brokerdesk.support.queries import tickets_of
from brokerdesk.trading import queries as trading_queries
from tests.automations.conftest import rule, stand_in
from tests.clients.factories import individual
from tests.partners.conftest import deal_payload, make_ib, plan_for, verified_client
from tests.payments.conftest import funded, new_client

pytestmark = pytest.mark.django_db


def only_run(rule_id: object) -> Run:
    runs = list(Run.objects.filter(rule_id=rule_id))
    assert len(runs) == 1, runs
    return runs[0]


def approve_kyc(client_id: UUID) -> None:
    for step in ("under_verification", "approved"):
        compliance.transition_kyc(client_id, step, by="system:test", reason="t", provider="sumsub")


def test_kyc_approval_opens_an_account_and_the_country_rule_moves_it_to_a_group(pipeline, platform):
    opening = rule(
        "kyc.approved",
        [{"action": "create_trading_account", "params": {"server": "sim", "group": "real\\std"}}],
    )
    grouping = rule(
        "trading.account_opened",
        [{"action": "assign_group", "params": {"group": "real\\eu"}}],
        [{"field": "client.country", "op": "in", "value": ["CY", "GR"]}],
    )
    cypriot, brazilian = individual(country="CY"), individual(country="BR", jurisdiction="cysec")

    approve_kyc(cypriot.pk)
    approve_kyc(brazilian.pk)
    pipeline.run()  # kyc.approved → accounts opened → trading.account_opened
    pipeline.run()  # → the group rule

    accounts = {c: trading_queries.accounts_of(c.pk) for c in (cypriot, brazilian)}
    assert [len(a) for a in accounts.values()] == [1, 1]
    eu_login, other_login = accounts[cypriot][0].login, accounts[brazilian][0].login
    assert platform.users[eu_login].group == "real\\eu"
    assert platform.users[other_login].group == "real\\std"  # the condition did not hold
    opened = Run.objects.get(rule=opening, client_id=cypriot.pk)
    assert opened.status == RunStatus.SUCCEEDED
    assert opened.results[0]["changes"]["login"] == eu_login
    moved = Run.objects.get(rule=grouping, client_id=cypriot.pk)
    assert moved.results[0]["changes"] == {
        "server": "sim",
        "login": eu_login,
        "group_before": "real\\std",
        "group_after": "real\\eu",
    }
    skipped = Run.objects.get(rule=grouping, client_id=brazilian.pk)
    assert skipped.status == RunStatus.SKIPPED
    assert skipped.conditions[0]["actual"] == "BR" and skipped.conditions[0]["result"] is False


def test_withdrawals_are_routed_by_the_clients_risk_score(pipeline, local_psp):
    payments.set_rules(auto_approve_up_to=0)  # every withdrawal waits for a lane
    straight = rule(
        "withdrawal.requested",
        [{"action": "route_withdrawal", "params": {"lane": "auto_approve"}}],
        [{"field": "client.risk_score", "op": "lt", "value": 20}],
    )
    review = rule(
        "withdrawal.requested",
        [
            {"action": "route_withdrawal", "params": {"lane": "manual_review"}},
            {"action": "open_edd_ticket", "params": {"subject": "Risky withdrawal"}},
        ],
        [{"field": "client.risk_score", "op": "gte", "value": 20}],
    )
    calm, risky = new_client(verified=True), new_client(verified=True)
    compliance.raise_flag(risky.pk, "pep", by="system:test", reason="minister of finance")
    ids = {}
    for client in (calm, risky):
        deposit = funded(local_psp, client, 50_000)
        ids[client] = payments.request_withdrawal(
            client.pk,
            amount=20_000,
            currency="USD",
            method_id=deposit.method_id,
            request_id=f"wd-{client.pk}",
            by=f"client:{client.pk}",
        ).id

    pipeline.run()

    calm_wd = payment_queries.get_withdrawal(ids[calm])
    assert calm_wd.status == "approved" and calm_wd.approved_by == rule_actor(straight.id)
    assert payment_queries.get_withdrawal(ids[risky]).status == "pending_approval"
    run = Run.objects.get(rule=review, client_id=risky.pk)
    assert run.conditions[0]["actual"] == risk_score(str(risky.pk)) >= 20
    assert run.status == RunStatus.SUCCEEDED
    [ticket] = tickets_of(risky.pk)
    assert (ticket.queue, ticket.priority, ticket.subject) == (
        "compliance",
        "high",
        "Risky withdrawal",
    )
    assert run.results[1]["changes"]["ticket_id"] == str(ticket.id)
    assert tickets_of(calm.pk) == []


def test_commissions_are_approved_and_made_payable_after_accrual(pipeline):
    approve = rule(
        "commission.accrued",
        [{"action": "approve_commission", "params": {"make_payable": True}}],
        [{"field": "event.kind", "op": "eq", "value": "deal"}],
    )
    with clock.frozen(clock.now() - timedelta(hours=2)) as c:
        ib = make_ib()
        plan_for(ib)
        client = verified_client()
        attribution.request_reassignment(client, ib.pk, by="system:test", reason="setup")
        c.advance(timedelta(hours=1))
        deal = parse_deal_closed(deal_payload(client, at=c.current, volume=20_000))
    accrual.accrue_deals([deal])

    pipeline.run()

    states = set(Accrual.objects.filter(ib=ib).values_list("state", flat=True))
    assert states == {"payable"}
    run = only_run(approve.id)
    assert run.results[0]["changes"]["state"] == "payable"
    assert run.override_roles == ["partner_manager", "finance"]


def test_an_aml_alert_opens_an_enhanced_due_diligence_ticket(pipeline):
    edd = rule(
        "aml.alert_raised",
        [
            {
                "action": "open_edd_ticket",
                "params": {"subject": "EDD: structuring", "priority": "urgent"},
            }
        ],
        [{"field": "event.severity", "op": "in", "value": ["high", "critical"]}],
    )
    client = individual()

    pipeline.send(
        stand_in(
            "aml.alert_raised",
            "compliance",
            client_id=str(client.pk),
            alert_id=str(client.pk),
            rule="structuring",
            severity="high",
        )
    )

    [ticket] = tickets_of(client.pk)
    assert (ticket.queue, ticket.priority, ticket.category) == ("compliance", "urgent", "kyc")
    assert only_run(edd.id).results[0]["changes"]["reference"] == ticket.reference


def test_a_notify_action_messages_the_client(pipeline):
    notifying = rule(
        "bonus.unlocked",
        [{"action": "notify", "params": {"kind": "bonus_granted"}}],
    )
    client = individual()

    pipeline.send(
        stand_in(
            "bonus.unlocked",
            "bonuses",
            bonus_id="b-1",
            client_id=str(client.pk),
            currency="USD",
            amount=5_000,
            reason="volume reached",
            campaign="Welcome",
        )
    )

    [message] = Notification.objects.filter(client_id=client.pk)
    assert message.kind == "bonus_granted" and "50.00" in message.subject
    assert only_run(notifying.id).results[0]["changes"]["notified"] == f"client:{client.pk}"


def test_a_withdrawal_already_approved_cannot_be_sent_to_review_and_waits_for_a_person(
    pipeline, local_psp
):
    review = rule(
        "withdrawal.requested",
        [{"action": "route_withdrawal", "params": {"lane": "manual_review"}}],
    )
    client = new_client(verified=True)
    deposit = funded(local_psp, client, 50_000)
    small = payments.request_withdrawal(  # under the threshold: approved at once by payments
        client.pk,
        amount=1_000,
        currency="USD",
        method_id=deposit.method_id,
        request_id=f"wd-small-{client.pk}",
        by=f"client:{client.pk}",
    )

    pipeline.run()

    run = only_run(review.id)
    assert run.status == RunStatus.FAILED and "illegal_transition" in run.error
    assert payment_queries.get_withdrawal(small.id).status == "approved"
    assert run.override_roles == ["finance"]


def test_the_demo_rules_name_groups_the_simulator_has():
    """The demo runs against the simulator: a rule naming a group it lacks fails every run."""
    from brokerdesk.automations.demo import DEMO_RULES
    from brokerdesk.trading.simulator.engine import DEFAULT_GROUPS

    named = {
        action["params"]["group"]
        for rule in DEMO_RULES
        for action in rule["actions"]
        if "group" in action.get("params", {})
    }
    assert named and named <= {group.name for group in DEFAULT_GROUPS}
