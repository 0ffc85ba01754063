"""The permission policy ``may``: KYC state , jurisdiction rule set , open flags."""

from __future__ import annotations

import copy
import json
from datetime import timedelta

import pytest

from brokerdesk.clients import services as client_services
from brokerdesk.compliance import queries, rules, services
from brokerdesk.compliance.kyc import KycState
from brokerdesk.compliance.queries import may
from brokerdesk.core import clock
from brokerdesk.core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from brokerdesk.core.models import OutboxEvent
from tests.clients.factories import individual, user
from tests.compliance.test_kyc import SYSTEM, bring_to

pytestmark = pytest.mark.django_db
ACTIONS = ("deposit", "trade", "withdraw", "earn_commission", "receive_bonus")


def bundled(jurisdiction: str) -> dict:
    return copy.deepcopy(next(d for d in rules.bundled() if d["jurisdiction"] == jurisdiction))


def test_an_unverified_clients_withdrawal_is_refused_with_a_reason_support_can_read():
    alice = individual()
    services.request_documents(alice.pk, by=SYSTEM, reason="onboarding")

    decision = may(alice.pk, "withdraw")

    assert not decision.allowed
    assert decision.reason_code == "kyc_documents_pending"
    assert "documents are still missing" in decision.reason
    assert (decision.kyc_state, decision.jurisdiction, decision.rule_set_version) == (
        "documents_pending",
        "cysec",
        1,
    )


def test_a_verified_client_may_do_everything_the_rule_set_offers():
    seychelles = individual(jurisdiction="fsa-sc", country="ZA", phone="")
    cyprus = individual()
    for c in (seychelles, cyprus):
        bring_to(c.pk, KycState.APPROVED)

    assert all(may(seychelles.pk, a).allowed for a in ACTIONS)
    assert all(may(cyprus.pk, a).allowed for a in ACTIONS if a != "receive_bonus")
    refused = may(cyprus.pk, "receive_bonus")
    assert (refused.allowed, refused.reason_code) == (False, "bonuses_not_allowed")


def test_before_verification_deposits_are_capped_by_the_jurisdictions_limit():
    alice = individual()  # CySEC-like: 2,000.00 EUR before verification
    services.request_documents(alice.pk, by=SYSTEM, reason="onboarding")

    ok = may(alice.pk, "deposit", amount=50_000, currency="EUR", deposited_total=100_000)
    assert ok.allowed and ok.reason_code == "pre_verification_deposit"
    assert ok.limit_remaining == 50_000
    exactly = may(alice.pk, "deposit", amount=100_000, currency="EUR", deposited_total=100_000)
    assert exactly.allowed and exactly.limit_remaining == 0

    over = may(alice.pk, "deposit", amount=100_001, currency="EUR", deposited_total=100_000)
    assert (over.allowed, over.reason_code, over.limit_remaining) == (
        False,
        "pre_verification_limit",
        100_000,
    )
    assert "Complete verification" in over.reason


def test_the_deposited_total_may_be_a_callable_asked_only_when_the_limit_applies():
    alice, bob = individual(), individual()
    services.request_documents(alice.pk, by=SYSTEM, reason="onboarding")
    bring_to(bob.pk, KycState.APPROVED)
    asked = []

    def total(client_id, currency):
        asked.append((client_id, currency))
        return 199_000

    assert not may(alice.pk, "deposit", amount=2_000, currency="eur", deposited_total=total)
    assert asked == [(alice.pk, "EUR")]
    assert may(bob.pk, "deposit", amount=10**9, currency="EUR", deposited_total=total)
    assert asked == [(alice.pk, "EUR")]


def test_a_pre_verification_deposit_check_needs_amount_currency_and_the_total_so_far():
    alice = individual()
    services.request_documents(alice.pk, by=SYSTEM, reason="onboarding")

    with pytest.raises(ValidationError) as error:
        may(alice.pk, "deposit")
    assert error.value.code == "amount_required"
    with pytest.raises(ValidationError) as error:
        may(alice.pk, "deposit", amount=100, currency="EUR")
    assert error.value.field == "deposited_total"
    refused = may(alice.pk, "deposit", amount=100, currency="JPY", deposited_total=0)
    assert refused.reason_code == "no_pre_verification_limit"


def test_states_outside_the_pre_verification_window_cannot_deposit():
    lead_cy = individual()  # CySEC-like: leads must first be asked for documents
    lead_sc = individual(jurisdiction="fsa-sc", country="ZA", phone="")  # Seychelles: leads may

    assert may(
        lead_cy.pk, "deposit", amount=100, currency="EUR", deposited_total=0
    ).reason_code == ("kyc_not_started")
    assert may(lead_sc.pk, "deposit", amount=100, currency="USD", deposited_total=0).allowed
    assert may(lead_sc.pk, "trade").reason_code == "pre_verification_trade"
    assert not may(lead_sc.pk, "withdraw").allowed


@pytest.mark.parametrize(
    ("state", "allowed_actions", "code"),
    [
        (KycState.REJECTED, set(), "kyc_rejected"),
        (KycState.RESTRICTED, {"withdraw"}, "kyc_restricted"),
        (KycState.AML_REVIEW, set(), "kyc_aml_review"),
        (KycState.MANUAL_REVIEW, set(), "kyc_manual_review"),
    ],
)
def test_rejected_restricted_and_reviewed_clients_are_blocked(state, allowed_actions, code):
    alice = individual()
    bring_to(alice.pk, state)

    decisions = {
        a: may(alice.pk, a, amount=100, currency="EUR", deposited_total=0) for a in ACTIONS
    }

    assert {a for a, d in decisions.items() if d.allowed} == allowed_actions
    assert decisions["trade"].reason_code == code


def test_open_flags_block_the_actions_they_name_until_cleared():
    raiser, checker = user("compliance_officer"), user("compliance_officer")
    alice = individual()
    bring_to(alice.pk, KycState.APPROVED)

    services.raise_flag(alice.pk, "aml_hold", by=raiser, reason="unusual inflow")

    withdraw = may(alice.pk, "withdraw")
    assert (withdraw.allowed, withdraw.reason_code) == (False, "flag_aml_hold")
    assert "AML hold" in withdraw.reason
    assert may(alice.pk, "trade").allowed
    with pytest.raises(PermissionDenied) as error:
        services.clear_flag(alice.pk, "aml_hold", by=raiser, reason="fine")
    assert error.value.code == "same_approver"

    services.clear_flag(alice.pk, "aml_hold", by=checker, reason="source of funds shown")
    assert may(alice.pk, "withdraw").allowed
    assert queries.open_flags(alice.pk) == []


def test_a_sanctions_hit_blocks_everything():
    alice = individual()
    bring_to(alice.pk, KycState.APPROVED)
    services.raise_flag(alice.pk, "sanctions_hit", by="system:screening", reason="list match")

    assert {may(alice.pk, a).reason_code for a in ACTIONS} == {"flag_sanctions_hit"}


def test_raising_an_open_flag_again_returns_it_and_a_support_agent_cannot_raise_one():
    alice = individual()
    first = services.raise_flag(alice.pk, "dispute", by=SYSTEM, reason="PSP dispute 1")
    second = services.raise_flag(alice.pk, "dispute", by=SYSTEM, reason="PSP dispute 1 again")

    assert first.id == second.id
    assert OutboxEvent.objects.filter(type="compliance.flag_raised").count() == 1
    with pytest.raises(PermissionDenied):
        services.raise_flag(alice.pk, "aml_hold", by=user("support"), reason="hunch")
    with pytest.raises(ValidationError):
        services.raise_flag(alice.pk, "bad_vibes", by=SYSTEM, reason="x")


def test_a_new_rule_set_version_takes_effect_on_its_date_and_decisions_name_it():
    alice = individual()
    services.request_documents(alice.pk, by=SYSTEM, reason="onboarding")
    v2 = bundled("cysec")
    v2["version"] = 2
    v2["pre_verification"]["deposit_limits"]["EUR"] = 50_000
    v2["effective_from"] = (clock.now().date() + timedelta(days=1)).isoformat()
    services.publish_rule_set(v2, by=SYSTEM, reason="tighter limit")

    today = may(alice.pk, "deposit", amount=60_000, currency="EUR", deposited_total=0)
    assert today.allowed and today.rule_set_version == 1
    with clock.frozen(clock.now() + timedelta(days=1)):
        tomorrow = may(alice.pk, "deposit", amount=60_000, currency="EUR", deposited_total=0)
    assert (tomorrow.allowed, tomorrow.rule_set_version) == (False, 2)


def test_a_stored_rule_set_version_is_never_edited():
    same = bundled("cysec")
    assert services.publish_rule_set(same, by=SYSTEM).version == 1  # identical: a no-op

    changed = bundled("cysec")
    changed["min_age"] = 21
    with pytest.raises(Conflict) as error:
        services.publish_rule_set(changed, by=SYSTEM)
    assert error.value.code == "rule_set_version_exists"


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (
            ("pre_verification", "deposit_limits", "EUR"),
            10.5,
            "pre_verification.deposit_limits.EUR",
        ),
        (("blocked_countries",), ["XX"], "blocked_countries"),
        (("required_documents", "individual"), [["tax_return"]], "required_documents.individual"),
        (("version",), 0, "version"),
    ],
)
def test_an_invalid_rule_set_is_refused_naming_the_key(path, value, field):
    data = bundled("scb-bs")
    data["version"] = 5
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value

    with pytest.raises(ValidationError) as error:
        services.publish_rule_set(json.loads(json.dumps(data)), by=SYSTEM)
    assert error.value.field == field


def test_a_country_blocked_by_a_later_rule_set_may_only_withdraw():
    alice = individual()
    bring_to(alice.pk, KycState.APPROVED)
    v2 = bundled("cysec")
    v2["version"] = 2
    v2["blocked_countries"].append("CY")
    services.publish_rule_set(v2, by=SYSTEM, reason="licence change")

    assert may(alice.pk, "deposit").reason_code == "country_blocked"
    assert may(alice.pk, "withdraw").allowed


def test_an_ended_relationship_allows_only_withdrawal():
    alice = individual()
    bring_to(alice.pk, KycState.APPROVED)
    client_services.end_relationship(alice.pk, by=SYSTEM, reason="closed")

    assert may(alice.pk, "trade").reason_code == "relationship_ended"
    assert may(alice.pk, "withdraw").allowed


def test_bad_questions_are_errors_not_refusals():
    alice = individual()
    with pytest.raises(ValidationError):
        may(alice.pk, "fly")
    with pytest.raises(ValidationError):
        may(alice.pk, "deposit", amount=10.5, currency="EUR")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        may(alice.pk, "deposit", amount=-1, currency="EUR")
    with pytest.raises(NotFound):
        may("0190a0a0-0000-7000-8000-000000000000", "trade")


def test_enhanced_due_diligence_triggers_come_from_the_rule_set():
    alice = individual(nationality="AE")
    services.raise_flag(alice.pk, "pep", by=SYSTEM, reason="minister's spouse")

    reasons = queries.edd_reasons(alice.pk, deposited_totals={"EUR": 1_500_001})

    assert reasons == [
        "politically exposed person",
        "high-risk country of nationality: AE",
        "cumulative deposits above 1500000 minor units of EUR",
    ]
    assert queries.edd_reasons(individual().pk) == []
