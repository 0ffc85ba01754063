"""The KYC state machine: legal transitions are recorded; illegal ones change nothing."""

from __future__ import annotations

import pytest

from brokerdesk.clients import queries as client_queries
from brokerdesk.compliance import queries, services
from brokerdesk.compliance.kyc import TRANSITIONS, KycState
from brokerdesk.compliance.models import KycCase, KycTransition
from brokerdesk.core.errors import IllegalTransition, PermissionDenied, ValidationError
from brokerdesk.core.models import AuditEntry, OutboxEvent
from tests.clients.factories import individual, user

pytestmark = pytest.mark.django_db

SYSTEM = "system:test"

# A route from lead to each state, through legal transitions.
ROUTES: dict[KycState, list[KycState]] = {
    KycState.LEAD: [],
    KycState.DOCUMENTS_PENDING: [KycState.DOCUMENTS_PENDING],
    KycState.UNDER_VERIFICATION: [KycState.UNDER_VERIFICATION],
    KycState.MANUAL_REVIEW: [KycState.UNDER_VERIFICATION, KycState.MANUAL_REVIEW],
    KycState.APPROVED: [KycState.UNDER_VERIFICATION, KycState.APPROVED],
    KycState.REJECTED: [KycState.UNDER_VERIFICATION, KycState.REJECTED],
    KycState.RESTRICTED: [KycState.UNDER_VERIFICATION, KycState.APPROVED, KycState.RESTRICTED],
    KycState.AML_REVIEW: [KycState.UNDER_VERIFICATION, KycState.AML_REVIEW],
}


def bring_to(client_id, state: KycState) -> None:
    for step in ROUTES[state]:
        services.transition_kyc(client_id, step, by=SYSTEM, reason=f"to {step}", provider="sumsub")


LEGAL = [
    (src, dst, event) for src, targets in TRANSITIONS.items() for dst, event in targets.items()
]
ILLEGAL = [(src, dst) for src in KycState for dst in KycState if dst not in TRANSITIONS[src]]


def test_a_new_client_is_a_lead():
    alice = individual()
    assert queries.kyc_status(alice.pk).state == "lead"


@pytest.mark.parametrize(("src", "dst", "event"), LEGAL, ids=lambda x: str(x))
def test_every_legal_transition_moves_audits_emits_and_lands_on_the_timeline(src, dst, event):
    alice = individual()
    bring_to(alice.pk, src)

    view = services.transition_kyc(
        alice.pk, dst, by="system:sumsub", reason="provider said so", provider="sumsub"
    )

    assert view.state == dst
    assert queries.kyc_status(alice.pk).state == dst
    last = queries.kyc_history(alice.pk)[-1]
    assert (last.from_state, last.to_state, last.actor) == (src, dst, "system:sumsub")
    audit = AuditEntry.objects.filter(object_id=str(alice.pk), action=event).last()
    assert audit is not None
    assert (audit.before["state"], audit.after["state"], audit.reason) == (
        src,
        dst,
        "provider said so",
    )
    outbox = OutboxEvent.objects.filter(type=event, aggregate_id=str(alice.pk)).last()
    assert outbox is not None and outbox.payload["to_state"] == dst
    assert client_queries.timeline(alice.pk)[0].kind == event


@pytest.mark.parametrize(("src", "dst"), ILLEGAL, ids=lambda x: str(x))
def test_every_illegal_transition_raises_and_changes_nothing(src, dst):
    alice = individual()
    bring_to(alice.pk, src)
    transitions, audits, events = (
        KycTransition.objects.count(),
        AuditEntry.objects.count(),
        OutboxEvent.objects.count(),
    )

    with pytest.raises(IllegalTransition) as error:
        services.transition_kyc(alice.pk, dst, by=SYSTEM, reason="try")

    assert error.value.field == "to_state"
    assert queries.kyc_status(alice.pk).state == src
    assert KycTransition.objects.count() == transitions
    assert AuditEntry.objects.count() == audits
    assert OutboxEvent.objects.count() == events


def test_a_final_rejection_cannot_be_retried_but_a_soft_one_can():
    soft, hard = individual(), individual()
    for client, final in ((soft, False), (hard, True)):
        bring_to(client.pk, KycState.UNDER_VERIFICATION)
        services.reject_kyc(client.pk, by=SYSTEM, reason="blurry", final=final)

    services.request_documents(soft.pk, by=SYSTEM, reason="please resend")
    assert queries.kyc_status(soft.pk).state == "documents_pending"
    with pytest.raises(IllegalTransition) as error:
        services.request_documents(hard.pk, by=SYSTEM, reason="please resend")
    assert error.value.code == "rejection_final"


def test_a_transition_needs_a_reason():
    alice = individual()
    with pytest.raises(ValidationError) as error:
        services.request_documents(alice.pk, by=SYSTEM, reason="  ")
    assert (error.value.code, error.value.field) == ("reason_required", "reason")
    assert not KycCase.objects.exists()


def test_manual_submission_needs_the_required_documents():
    alice = individual()
    services.request_documents(alice.pk, by=SYSTEM, reason="onboarding")

    with pytest.raises(ValidationError) as error:
        services.submit_kyc(alice.pk, by=SYSTEM)

    assert error.value.code == "documents_missing"
    assert "passport or national_id or driving_licence" in error.value.message
    assert queries.kyc_status(alice.pk).state == "documents_pending"


def test_only_a_compliance_officer_decides_and_a_client_may_only_submit_their_own_file():
    officer, agent = user("compliance_officer"), user("support")
    alice_user, bob_user = user(), user()
    alice = individual(user=alice_user)
    services.request_documents(alice.pk, by=agent, reason="asked on the phone")

    with pytest.raises(PermissionDenied):
        services.submit_kyc(alice.pk, by=bob_user, provider="sumsub")
    services.submit_kyc(alice.pk, by=alice_user, provider="sumsub")
    with pytest.raises(PermissionDenied):
        services.approve_kyc(alice.pk, by=agent, reason="looks fine")
    with pytest.raises(PermissionDenied):
        services.approve_kyc(alice.pk, by=alice_user, reason="trust me")

    services.approve_kyc(alice.pk, by=officer, reason="documents verified")
    assert queries.kyc_status(alice.pk).state == "approved"
    assert queries.kyc_history(alice.pk)[-1].actor == f"user:{officer.pk}"


def test_the_officer_who_restricted_a_client_cannot_lift_the_restriction():
    first, second = user("compliance_officer"), user("compliance_officer")
    alice = individual()
    bring_to(alice.pk, KycState.APPROVED)
    services.open_aml_review(alice.pk, by=first, reason="structuring pattern")

    with pytest.raises(PermissionDenied) as error:
        services.approve_kyc(alice.pk, by=first, reason="cleared")
    assert error.value.code == "same_approver"
    assert queries.kyc_status(alice.pk).state == "aml_review"

    services.approve_kyc(alice.pk, by=second, reason="source of funds documented")
    assert queries.kyc_status(alice.pk).state == "approved"


def test_review_queue_lists_clients_waiting_longest_first():
    alice, bob = individual(), individual()
    for c in (alice, bob):
        bring_to(c.pk, KycState.MANUAL_REVIEW)

    queue = queries.clients_in_state("manual_review")
    assert [v.client_id for v in queue] == [alice.pk, bob.pk]
