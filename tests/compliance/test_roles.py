"""Staff roles: groups with permissions, role checks, maker-checker, and API access."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from brokerdesk.compliance import queries
from brokerdesk.core.errors import PermissionDenied
from brokerdesk.staff.roles import (
    Role,
    ensure_different_approver,
    has_role,
    require_role,
    sync_roles,
)
from tests.clients.factories import individual, user

pytestmark = pytest.mark.django_db


def test_every_role_is_a_group_with_its_permissions_after_migrate():
    assert set(Group.objects.values_list("name", flat=True)) >= {r.value for r in Role}
    decide = "compliance.decide_kyc"
    assert (
        Group.objects.get(name="compliance_officer")
        .permissions.filter(codename=decide.split(".")[1])
        .exists()
    )
    sync_roles()  # idempotent
    officer = user("compliance_officer")
    auditor = user("auditor")

    assert officer.has_perm("compliance.decide_kyc")
    assert not auditor.has_perm("compliance.decide_kyc")
    assert auditor.has_perm("compliance.view_document")
    assert user("finance").has_perm("staff.approve_withdrawal")
    assert not user("support").has_perm("staff.approve_withdrawal")
    assert user("admin").has_perm("compliance.decide_kyc")


def test_require_role_lets_holders_and_admins_through_and_refuses_others():
    officer, admin, agent = user("compliance_officer"), user("admin"), user("support")

    require_role(officer, Role.COMPLIANCE_OFFICER)
    require_role(admin, Role.COMPLIANCE_OFFICER)
    with pytest.raises(PermissionDenied) as error:
        require_role(agent, Role.COMPLIANCE_OFFICER, Role.FINANCE)
    assert error.value.code == "role_required"
    assert not has_role(None, Role.SUPPORT)


def test_maker_checker_refuses_the_same_person_and_accepts_another():
    maker, checker = user("finance"), user("finance")

    ensure_different_approver(maker, checker)
    with pytest.raises(PermissionDenied) as error:
        ensure_different_approver(maker, maker)
    assert (error.value.code, error.value.field) == ("same_approver", "approved_by")


# -- the API checks roles and ownership ---------------------------------------------------


def test_a_client_reads_their_own_record_but_never_another_clients(client):
    alice_user, bob_user = user(), user()
    alice, bob = individual(user=alice_user), individual(user=bob_user)
    client.force_login(alice_user)

    assert client.get(f"/api/v1/clients/{alice.pk}").json()["email"] == alice.email
    assert client.get("/api/v1/clients/me").json()["id"] == str(alice.pk)
    for path in ("", "/timeline", "/logins"):
        assert client.get(f"/api/v1/clients/{bob.pk}{path}").status_code == 404
    assert client.get(f"/api/v1/compliance/clients/{bob.pk}/kyc").status_code == 404
    assert client.get("/api/v1/clients/").status_code == 403


def test_anonymous_callers_are_refused(client):
    alice = individual()
    assert client.get(f"/api/v1/clients/{alice.pk}").status_code == 401


def test_a_support_agent_cannot_approve_kyc_through_the_api(client):
    alice = individual()
    client.force_login(user("support"))
    client.post(
        f"/api/v1/compliance/clients/{alice.pk}/kyc/transitions",
        {"to_state": "under_verification", "reason": "sent to provider"},
        content_type="application/json",
    )  # the manual provider needs documents: refused, state unchanged
    response = client.post(
        f"/api/v1/compliance/clients/{alice.pk}/kyc/transitions",
        {"to_state": "approved", "reason": "looks fine"},
        content_type="application/json",
    )

    assert response.status_code == 403
    assert response.json()["code"] == "role_required"
    assert queries.kyc_status(alice.pk).state == "lead"


def test_a_compliance_officer_moves_kyc_and_sees_the_decision_with_its_reason(client):
    alice = individual()
    client.force_login(user("compliance_officer"))

    response = client.post(
        f"/api/v1/compliance/clients/{alice.pk}/kyc/transitions",
        {"to_state": "documents_pending", "reason": "onboarding"},
        content_type="application/json",
    )
    assert response.status_code == 200
    assert response.json()["history"][0]["to_state"] == "documents_pending"

    illegal = client.post(
        f"/api/v1/compliance/clients/{alice.pk}/kyc/transitions",
        {"to_state": "restricted", "reason": "x"},
        content_type="application/json",
    )
    assert illegal.status_code == 409
    assert illegal.json()["code"] == "illegal_transition"

    decision = client.get(f"/api/v1/compliance/clients/{alice.pk}/may?action=withdraw").json()
    assert decision["allowed"] is False
    assert decision["reason_code"] == "kyc_documents_pending"


def test_staff_register_a_client_through_the_api_and_bad_input_names_the_field(client):
    client.force_login(user("support"))
    body = {
        "email": "new@example.com",
        "first_name": "Nikos",
        "last_name": "Georgiou",
        "date_of_birth": "1985-02-03",
        "country": "CY",
        "jurisdiction": "cysec",
        "phone": "+35799123456",
    }
    created = client.post("/api/v1/clients/individuals", body, content_type="application/json")
    assert created.status_code == 201
    assert created.json()["phone"] == "+35799123456"

    bad = client.post(
        "/api/v1/clients/individuals",
        {**body, "email": "other@example.com", "date_of_birth": "2015-01-01"},
        content_type="application/json",
    )
    assert bad.status_code == 400
    assert bad.json() == {
        "code": "under_age",
        "message": "Clients must be at least 18 years old.",
        "field": "date_of_birth",
        "details": {"min_age": "18"},
    }


def test_dealing_cannot_register_clients_and_an_auditor_cannot_raise_flags(client):
    alice = individual()
    client.force_login(user("dealing"))
    assert (
        client.post("/api/v1/clients/individuals", {}, content_type="application/json").status_code
        == 403
    )
    client.force_login(user("auditor"))
    response = client.post(
        f"/api/v1/compliance/clients/{alice.pk}/flags",
        {"kind": "aml_hold", "reason": "x"},
        content_type="application/json",
    )
    assert response.status_code == 403
    assert queries.open_flags(alice.pk) == []


def test_the_openapi_document_lists_the_clients_and_compliance_endpoints(client):
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    assert "/api/v1/clients/{client_id}" in paths
    assert "/api/v1/compliance/clients/{client_id}/may" in paths
    assert "/api/v1/compliance/webhooks/sumsub" in paths
