"""The ledger API: staff only, idempotency key required, clear errors."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from brokerdesk.ledger import queries, services

from .conftest import deposit, unique

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_user(
        username=unique("staff"), password="x-very-long-pass", is_staff=True
    )
    client.force_login(user)
    return client


def transfer_body(debit_id, credit_id, amount=1_000):
    return {
        "kind": "adjustment",
        "currency": "USD",
        "legs": [
            {"account_id": str(debit_id), "side": "D", "amount": amount},
            {"account_id": str(credit_id), "side": "C", "amount": amount},
        ],
        "reason": "goodwill credit",
    }


def test_anonymous_callers_are_refused(client, wallet):
    response = client.get(f"/api/v1/ledger/accounts/{wallet().id}")
    assert response.status_code == 401


def test_non_staff_users_are_refused(client, wallet):
    user = get_user_model().objects.create_user(username=unique("c"), password="x-long-pass-1")
    client.force_login(user)
    response = client.get(f"/api/v1/ledger/accounts/{wallet().id}")
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


def test_post_transfer_then_repeat_with_the_same_key(staff_client, wallet, psp):
    account = wallet()
    body = transfer_body(psp().id, account.id)

    first = staff_client.post(
        "/api/v1/ledger/transfers",
        body,
        content_type="application/json",
        headers={"Idempotency-Key": "api-1"},
    )
    again = staff_client.post(
        "/api/v1/ledger/transfers",
        body,
        content_type="application/json",
        headers={"Idempotency-Key": "api-1"},
    )

    assert first.status_code == 201 and first.json()["replayed"] is False
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert again.json()["transfer_id"] == first.json()["transfer_id"]
    assert queries.balance(account.id).posted == 1_000


def test_missing_idempotency_key_is_a_validation_error(staff_client, wallet, psp):
    response = staff_client.post(
        "/api/v1/ledger/transfers",
        transfer_body(psp().id, wallet().id),
        content_type="application/json",
    )
    assert response.status_code == 422
    assert "Idempotency-Key" in response.content.decode()


def test_overdraft_answers_409_with_code_and_field(staff_client, wallet, psp):
    account = wallet()
    response = staff_client.post(
        "/api/v1/ledger/transfers",
        transfer_body(account.id, psp().id),
        content_type="application/json",
        headers={"Idempotency-Key": unique()},
    )
    assert response.status_code == 409
    assert response.json()["code"] == "insufficient_funds"
    assert response.json()["field"] == "amount"


def test_unknown_currency_answers_400(staff_client, wallet, psp):
    body = transfer_body(psp().id, wallet().id) | {"currency": "QQQ"}
    response = staff_client.post(
        "/api/v1/ledger/transfers",
        body,
        content_type="application/json",
        headers={"Idempotency-Key": unique()},
    )
    assert response.status_code == 400
    assert response.json() | {"message": ""} == {
        "code": "unknown_currency",
        "field": "currency",
        "message": "",
    }


def test_pending_then_void_and_reverse_through_the_api(staff_client, wallet, psp):
    account = wallet()
    deposit(account, 5_000)
    body = transfer_body(account.id, psp().id, 2_000) | {"pending": True, "timeout_s": 60}
    pending = staff_client.post(
        "/api/v1/ledger/transfers",
        body,
        content_type="application/json",
        headers={"Idempotency-Key": unique()},
    ).json()
    assert queries.balance(account.id).available == 3_000

    voided = staff_client.post(
        f"/api/v1/ledger/transfers/{pending['transfer_id']}/void",
        {"reason": "client cancelled"},
        content_type="application/json",
        headers={"Idempotency-Key": unique()},
    )
    assert voided.status_code == 201 and voided.json()["phase"] == "void_pending"
    assert queries.balance(account.id).available == 5_000

    posted = services.transfer(
        unique(),
        debit_account=psp().id,
        credit_account=account.id,
        amount=300,
        currency="USD",
        kind="deposit",
    )
    reversed_ = staff_client.post(
        f"/api/v1/ledger/transfers/{posted.transfer_id}/reverse",
        {"reason": "duplicate deposit"},
        content_type="application/json",
        headers={"Idempotency-Key": unique()},
    )
    assert reversed_.status_code == 201
    assert queries.balance(account.id).posted == 5_000


def test_balance_and_statement_endpoints(staff_client, wallet):
    account = wallet()
    deposit(account, 4_200)
    balance = staff_client.get(f"/api/v1/ledger/accounts/{account.id}").json()
    assert balance["posted"] == 4_200 and balance["available"] == 4_200
    listing = staff_client.get(
        "/api/v1/ledger/accounts", {"owner_type": "client", "owner_id": account.owner_id}
    ).json()
    assert [row["account_id"] for row in listing] == [str(account.id)]
    statement = staff_client.get(
        f"/api/v1/ledger/accounts/{account.id}/statement",
        {"start": "2000-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z"},
    ).json()
    assert statement["closing"] == 4_200 and len(statement["lines"]) == 1


def test_unknown_account_answers_404(staff_client):
    response = staff_client.get(f"/api/v1/ledger/accounts/{services.new_id()}")
    assert response.status_code == 404
