"""The payments API: staff endpoints for withdrawals and the exceptions queue."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from brokerdesk.payments import services
from brokerdesk.payments.models import ReconciliationException
from brokerdesk.staff.roles import Role, grant_role
from tests.payments.conftest import funded, new_client, wallet

pytestmark = pytest.mark.django_db


def staff(username: str, *roles: Role) -> object:
    user = get_user_model().objects.create_user(username=username, password=None)
    grant_role(user, *roles)
    return user


def test_finance_approves_a_withdrawal_another_person_requested(client, local_psp):
    alice = new_client(verified=True)
    deposit = funded(local_psp, alice, 500_000)
    maker = staff("maker", Role.FINANCE)
    checker = staff("checker", Role.FINANCE)
    requested = services.request_withdrawal(
        alice.pk,
        amount=300_000,
        currency="USD",
        method_id=deposit.method_id,
        request_id="api-1",
        by=maker,
    )

    client.force_login(maker)
    same = client.post(
        f"/api/v1/payments/withdrawals/{requested.id}/approve",
        {"reason": "ok"},
        content_type="application/json",
    )
    client.force_login(checker)
    other = client.post(
        f"/api/v1/payments/withdrawals/{requested.id}/approve",
        {"reason": "checked"},
        content_type="application/json",
    )

    assert same.status_code == 403 and same.json()["code"] == "same_approver"
    assert other.status_code == 200 and other.json()["status"] == "approved"


def test_support_cannot_reject_a_withdrawal_through_the_api(client, local_psp):
    alice = new_client(verified=True)
    deposit = funded(local_psp, alice, 500_000)
    requested = services.request_withdrawal(
        alice.pk,
        amount=300_000,
        currency="USD",
        method_id=deposit.method_id,
        request_id="api-2",
        by="system:test",
    )
    client.force_login(staff("helper", Role.SUPPORT))

    response = client.post(
        f"/api/v1/payments/withdrawals/{requested.id}/reject",
        {"reason": "no"},
        content_type="application/json",
    )

    assert response.status_code == 403
    assert wallet(alice.pk, bucket="locked") == 300_000


def test_finance_lists_and_resolves_exceptions_with_a_note(client, local_psp):
    services.import_bank_statement(
        "transaction_id,amount,currency,remittance\nTX-1,500,EUR,unknown\n"
    )
    exception = ReconciliationException.objects.get()
    client.force_login(staff("fin", Role.FINANCE))

    listed = client.get("/api/v1/payments/exceptions?status=new")
    no_note = client.post(
        f"/api/v1/payments/exceptions/{exception.id}/resolve",
        {"note": ""},
        content_type="application/json",
    )
    resolved = client.post(
        f"/api/v1/payments/exceptions/{exception.id}/resolve",
        {"note": "refunded to sender"},
        content_type="application/json",
    )

    assert [e["kind"] for e in listed.json()] == ["unmatched_webhook"]
    assert no_note.status_code == 400 and no_note.json()["field"] == "note"
    assert resolved.status_code == 200
    exception.refresh_from_db()
    assert exception.status == "resolved" and exception.resolved_by.startswith("user:")
