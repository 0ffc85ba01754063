"""Withdrawals: request (cash → locked) → checks → approval → payout → paid/rejected/returned."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from brokerdesk.core.errors import (
    Conflict,
    DomainError,
    IllegalTransition,
    PermissionDenied,
    ValidationError,
)
from brokerdesk.core.models import OutboxEvent
from brokerdesk.ledger import queries as ledger_queries
from brokerdesk.ledger import services as ledger
from brokerdesk.ledger.errors import InsufficientFunds
from brokerdesk.payments import queries, services
from brokerdesk.payments.models import PaymentMethod, Withdrawal
from tests.payments.conftest import deliver, funded, new_client, wallet

FINANCE = "user:finance-7"


def withdraw(client: Any, amount: int, method_id: Any, **kw: Any) -> services.WithdrawalView:
    return services.request_withdrawal(
        client.pk,
        amount=amount,
        currency=kw.pop("currency", "USD"),
        method_id=method_id,
        request_id=kw.pop("request_id", f"wd-{client.pk}-{amount}"),
        by=kw.pop("by", f"client:{client.pk}"),
    )


def clearing() -> int:
    account = ledger.system_account("psp_clearing", "USD", qualifier="sandbox")
    return ledger_queries.balance(account.id).posted


@pytest.mark.django_db
def test_an_unverified_clients_withdrawal_is_refused_with_a_reason(local_psp):
    bob = new_client(verified=False)
    deposit = funded(local_psp, bob, 50_000)

    with pytest.raises(PermissionDenied) as refused:
        withdraw(bob, 10_000, deposit.method_id)

    assert refused.value.code == "kyc_documents_pending"
    assert "documents are still missing" in refused.value.message
    assert Withdrawal.objects.count() == 0
    assert wallet(bob.pk) == 50_000 and wallet(bob.pk, bucket="locked") == 0


@pytest.mark.django_db
def test_a_small_withdrawal_of_a_risky_client_waits_for_a_second_person(local_psp):
    from brokerdesk.compliance import queries as compliance_queries
    from brokerdesk.compliance import services as compliance

    pep = new_client(verified=True)
    deposit = funded(local_psp, pep, 100_000)
    compliance.raise_flag(pep.pk, "pep", by="system:test", reason="a politically exposed person")
    assert compliance_queries.risk_score(pep.pk) == 35  # the flag, and the EDD reason it adds

    requested = withdraw(pep, 10_000, deposit.method_id)

    assert requested.status == "pending_approval" and not requested.approved_by
    step = queries.timeline(requested.id)[-1]
    assert step.to_status == "pending_approval"
    assert step.reason == "risk score 35 above 19: needs a second person"


@pytest.mark.django_db
def test_a_small_withdrawal_is_approved_automatically_sent_and_paid(local_psp):
    alice = new_client(verified=True)
    deposit = funded(local_psp, alice, 100_000)

    requested = withdraw(alice, 40_000, deposit.method_id)

    assert requested.status == "approved" and requested.approved_by == "system:auto-approval"
    assert (wallet(alice.pk), wallet(alice.pk, bucket="locked")) == (60_000, 40_000)

    sent = services.send_payout(requested.id)
    assert sent.status == "sent" and sent.provider_id.startswith("po_")
    assert local_psp.get(sent.provider_id)["destination"] == "card_4242"

    assert deliver(local_psp, sent.provider_id, "paid") == "paid"
    assert (wallet(alice.pk), wallet(alice.pk, bucket="locked")) == (60_000, 0)
    assert clearing() == -100_000 + 40_000
    steps = [s.to_status for s in queries.timeline(requested.id)]
    assert steps == ["requested", "approved", "sent", "paid"]
    types = set(OutboxEvent.objects.values_list("type", flat=True))
    assert {"withdrawal.requested", "withdrawal.approved", "withdrawal.paid"} <= types


@pytest.mark.django_db
def test_a_large_withdrawal_needs_a_second_person_not_the_requester(local_psp):
    alice = new_client(verified=True)
    deposit = funded(local_psp, alice, 500_000)
    requested = withdraw(alice, 300_000, deposit.method_id, by=FINANCE)
    assert requested.status == "pending_approval"

    with pytest.raises(PermissionDenied) as same:
        services.approve_withdrawal(requested.id, by=FINANCE, reason="looks fine")
    assert same.value.code == "same_approver"
    assert queries.get_withdrawal(requested.id).status == "pending_approval"

    approved = services.approve_withdrawal(requested.id, by="user:finance-8", reason="checked")
    assert approved.status == "approved" and approved.approved_by == "user:finance-8"


@pytest.mark.django_db
def test_a_staff_user_without_the_finance_role_cannot_approve(local_psp):
    from django.contrib.auth import get_user_model

    alice = new_client(verified=True)
    deposit = funded(local_psp, alice, 500_000)
    requested = withdraw(alice, 300_000, deposit.method_id)
    clerk = get_user_model().objects.create_user(username="clerk", password=None)

    with pytest.raises(PermissionDenied):
        services.approve_withdrawal(requested.id, by=clerk, reason="please")


@pytest.mark.django_db
def test_a_rejected_withdrawal_returns_the_funds_to_cash(local_psp):
    alice = new_client(verified=True)
    deposit = funded(local_psp, alice, 500_000)
    requested = withdraw(alice, 300_000, deposit.method_id)

    rejected = services.reject_withdrawal(requested.id, by=FINANCE, reason="open dispute")

    assert rejected.status == "rejected"
    assert (wallet(alice.pk), wallet(alice.pk, bucket="locked")) == (500_000, 0)
    with pytest.raises(IllegalTransition):
        services.approve_withdrawal(requested.id, by=FINANCE, reason="changed my mind")


@pytest.mark.django_db
def test_a_returned_payout_puts_the_money_back_in_the_wallet(local_psp):
    alice = new_client(verified=True)
    deposit = funded(local_psp, alice, 100_000)
    sent = services.send_payout(withdraw(alice, 30_000, deposit.method_id).id)
    deliver(local_psp, sent.provider_id, "paid")

    assert deliver(local_psp, sent.provider_id, "return") == "returned"

    assert wallet(alice.pk) == 100_000 and clearing() == -100_000
    assert queries.get_withdrawal(sent.id).status == "returned"
    assert OutboxEvent.objects.filter(type="withdrawal.returned").count() == 1


@pytest.mark.django_db
def test_a_failed_payout_unlocks_the_funds(local_psp):
    alice = new_client(verified=True)
    deposit = funded(local_psp, alice, 100_000)
    sent = services.send_payout(withdraw(alice, 30_000, deposit.method_id).id)

    assert deliver(local_psp, sent.provider_id, "fail") == "failed"

    assert (wallet(alice.pk), wallet(alice.pk, bucket="locked")) == (100_000, 0)


@pytest.mark.django_db
def test_a_payout_is_sent_once(local_psp):
    alice = new_client(verified=True)
    deposit = funded(local_psp, alice, 100_000)
    requested = withdraw(alice, 30_000, deposit.method_id)
    services.send_payout(requested.id)

    with pytest.raises(IllegalTransition):
        services.send_payout(requested.id)
    assert sum(1 for o in local_psp.objects.values() if o["object"] == "payout") == 1


@pytest.mark.django_db
def test_withdrawals_go_only_to_a_method_the_client_owns_and_deposited_with(local_psp):
    alice, mallory = new_client(verified=True), new_client(verified=True)
    deposit = funded(local_psp, alice, 100_000)
    funded(local_psp, mallory, 100_000)
    never_used = PaymentMethod.objects.create(
        client_id=alice.pk, provider="sandbox", token="card_0000", created_at=deposit.created_at
    )

    with pytest.raises(PermissionDenied) as not_owned:
        withdraw(mallory, 10_000, deposit.method_id)
    assert not_owned.value.code == "method_not_owned" and not_owned.value.field == "method_id"
    with pytest.raises(ValidationError) as not_source:
        withdraw(alice, 10_000, never_used.id)
    assert not_source.value.code == "not_return_to_source"


@pytest.mark.django_db
def test_bonus_money_cannot_be_withdrawn(local_psp):
    alice = new_client(verified=True)
    deposit = funded(local_psp, alice, 10_000)
    ledger.transfer(
        "bonus-1",
        debit_account=ledger.system_account("bonus_expense", "USD").id,
        credit_account=ledger.wallet_account(alice.pk, "USD", "bonus").id,
        amount=50_000,
        currency="USD",
        kind="bonus",
    )

    with pytest.raises(InsufficientFunds):
        withdraw(alice, 20_000, deposit.method_id)
    assert Withdrawal.objects.count() == 0 and wallet(alice.pk, bucket="bonus") == 50_000


@pytest.mark.django_db
def test_the_same_request_id_returns_the_first_withdrawal(local_psp):
    alice = new_client(verified=True)
    deposit = funded(local_psp, alice, 100_000)
    first = withdraw(alice, 10_000, deposit.method_id, request_id="w-1")

    again = withdraw(alice, 10_000, deposit.method_id, request_id="w-1")

    assert again.replayed and again.id == first.id and wallet(alice.pk) == 90_000
    with pytest.raises(Conflict):
        withdraw(alice, 20_000, deposit.method_id, request_id="w-1")


@pytest.mark.django_db(transaction=True)
def test_concurrent_withdrawals_never_overdraw_the_wallet(local_psp):
    alice = new_client(verified=True)
    deposit = funded(local_psp, alice, 100_000)
    barrier = threading.Barrier(6)
    results: list[str] = []

    def race(n: int) -> None:
        try:
            barrier.wait()
            withdraw(alice, 30_000, deposit.method_id, request_id=f"race-{n}")
            results.append("ok")
        except DomainError as exc:
            results.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=race, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(results) == ["insufficient_funds"] * 3 + ["ok"] * 3
    assert (wallet(alice.pk), wallet(alice.pk, bucket="locked")) == (10_000, 90_000)
    assert Withdrawal.objects.count() == 3
