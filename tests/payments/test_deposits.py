"""Deposits end to end: intent → sandbox PSP → signed webhook → inbox → ledger."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from django.db import connection

from brokerdesk.core.errors import Conflict, IllegalTransition, PermissionDenied
from brokerdesk.core.models import AuditEntry, OutboxEvent
from brokerdesk.ledger import queries as ledger_queries
from brokerdesk.ledger import services as ledger
from brokerdesk.payments import queries, services
from brokerdesk.payments.models import Deposit, InboxEvent, ReconciliationException
from brokerdesk.payments.sandbox import signing
from tests.payments.conftest import API_KEY, SECRET, deliver, new_client, pay, wallet

LIVE = pytest.mark.django_db(transaction=True)  # real webhooks over HTTP, real threads
LOCAL = pytest.mark.django_db  # webhooks handed to the service in the test's transaction


def intent(client: Any, amount: int = 100_000, currency: str = "USD", **kw: Any) -> Any:
    return services.create_deposit_intent(
        client.pk,
        amount=amount,
        currency=currency,
        request_id=kw.pop("request_id", f"req-{client.pk}-{amount}-{currency}"),
        by=kw.pop("by", f"client:{client.pk}"),
        method_token=kw.pop("method_token", "card_4242"),
        **kw,
    )


def signed(event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event).encode()
    return body, {signing.HEADER: signing.sign(body, SECRET)}


def clearing(currency: str = "USD") -> int:
    account = ledger.system_account("psp_clearing", currency, qualifier="sandbox")
    return ledger_queries.balance(account.id).posted


@LIVE
def test_a_1000_dollar_card_deposit_credits_the_wallet_and_emits_deposit_confirmed(sandbox):
    alice = new_client(verified=True)
    deposit = intent(alice, 100_000)
    assert deposit.status == "pending" and deposit.pay_url

    pay(sandbox, deposit)

    assert wallet(alice.pk) == 100_000
    assert wallet(alice.pk, bucket="pending") == 0
    assert clearing() == -100_000
    assert queries.get_deposit(deposit.id).status == "confirmed"
    steps = [(s.from_status, s.to_status) for s in queries.timeline(deposit.id)]
    assert steps == [("", "initiated"), ("initiated", "pending"), ("pending", "confirmed")]
    confirmed = OutboxEvent.objects.filter(type="deposit.confirmed").get()
    assert confirmed.payload["amount"] == 100_000 and confirmed.payload["available"] is True
    assert AuditEntry.objects.filter(action="payments.deposit.confirmed").count() == 1


@LIVE
def test_the_same_webhook_200_ms_later_posts_nothing(sandbox):
    sandbox.faults.update({"duplicate": "delayed", "duplicate_delay_ms": 200})
    alice = new_client(verified=True)
    deposit = intent(alice, 100_000)

    pay(sandbox, deposit)

    assert [d["status"] for d in sandbox.deliveries] == [200, 200]
    assert wallet(alice.pk) == 100_000
    assert list(InboxEvent.objects.values_list("outcome", flat=True)) == ["confirmed"]
    assert OutboxEvent.objects.filter(type="deposit.confirmed").count() == 1


@LIVE
def test_the_same_webhook_at_the_same_instant_posts_once(sandbox):
    sandbox.faults.update({"duplicate": "instant"})
    alice = new_client(verified=True)
    deposit = intent(alice, 100_000)

    pay(sandbox, deposit)

    assert [d["status"] for d in sandbox.deliveries] == [200, 200]
    assert wallet(alice.pk) == 100_000
    assert InboxEvent.objects.count() == 1


@LIVE
def test_eight_threads_delivering_one_event_post_it_once(sandbox):
    alice = new_client(verified=True)
    deposit = intent(alice, 50_000)
    row = Deposit.objects.get(pk=deposit.id)
    body, headers = signed(
        {
            "id": "evt_race",
            "type": "payment.succeeded",
            "data": {
                "object": {
                    "id": row.provider_id,
                    "reference": row.reference,
                    "amount": 50_000,
                    "currency": "USD",
                    "status": "succeeded",
                }
            },
        }
    )
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def deliver() -> None:
        try:
            barrier.wait()
            outcomes.append(services.receive_webhook("sandbox", body, headers))
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(outcomes) == ["confirmed"] + ["duplicate"] * 7
    assert wallet(alice.pk) == 50_000


@LOCAL
def test_a_second_event_for_a_confirmed_payment_changes_nothing(local_psp):
    alice = new_client(verified=True)
    deposit = intent(alice, 100_000)
    deliver(local_psp, deposit.provider_id, "complete")
    row = Deposit.objects.get(pk=deposit.id)
    body, headers = signed(
        {
            "id": "evt_other",
            "type": "payment.succeeded",
            "data": {
                "object": {
                    "id": row.provider_id,
                    "reference": row.reference,
                    "amount": 100_000,
                    "currency": "USD",
                    "status": "succeeded",
                }
            },
        }
    )

    assert services.receive_webhook("sandbox", body, headers) == "already_confirmed"
    assert wallet(alice.pk) == 100_000


@LOCAL
def test_a_forged_webhook_is_refused_before_anything_is_recorded(local_psp, client):
    alice = new_client(verified=True)
    deposit = intent(alice, 100_000)
    row = Deposit.objects.get(pk=deposit.id)
    body = json.dumps(
        {
            "id": "evt_forged",
            "type": "payment.succeeded",
            "data": {
                "object": {
                    "id": "x",
                    "reference": row.reference,
                    "amount": 100_000,
                    "currency": "USD",
                    "status": "succeeded",
                }
            },
        }
    ).encode()

    response = client.post(
        "/api/v1/payments/webhooks/sandbox",
        data=body,
        content_type="application/json",
        headers={signing.HEADER: signing.sign(body, "not-the-secret")},
    )

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_signature"
    assert InboxEvent.objects.count() == 0 and wallet(alice.pk) == 0


@LOCAL
def test_a_webhook_for_a_different_amount_posts_nothing_and_opens_an_exception(local_psp):
    alice = new_client(verified=True)
    deposit = intent(alice, 100_000)
    row = Deposit.objects.get(pk=deposit.id)
    body, headers = signed(
        {
            "id": "evt_short",
            "type": "payment.succeeded",
            "data": {
                "object": {
                    "id": row.provider_id,
                    "reference": row.reference,
                    "amount": 99_000,
                    "currency": "USD",
                    "status": "succeeded",
                }
            },
        }
    )

    assert services.receive_webhook("sandbox", body, headers) == "amount_mismatch"
    assert wallet(alice.pk) == 0 and wallet(alice.pk, bucket="pending") == 0
    assert ReconciliationException.objects.get().kind == "webhook_amount_mismatch"


@LOCAL
def test_a_large_first_deposit_is_held_pending_until_released(local_psp):
    services.set_rules(first_deposit_review_above=50_000)
    alice = new_client(verified=True)
    deposit = intent(alice, 100_000)

    deliver(local_psp, deposit.provider_id, "complete")

    assert queries.get_deposit(deposit.id).status == "held"
    assert (wallet(alice.pk, bucket="pending"), wallet(alice.pk)) == (100_000, 0)
    assert OutboxEvent.objects.get(type="deposit.confirmed").payload["available"] is False

    services.release_deposit(deposit.id, by="user:finance-1", reason="source of funds checked")

    assert (wallet(alice.pk, bucket="pending"), wallet(alice.pk)) == (0, 100_000)
    assert queries.get_deposit(deposit.id).status == "confirmed"


@LOCAL
def test_deposits_beyond_the_velocity_limit_are_held(local_psp):
    services.set_rules(velocity_max_count=1)
    alice = new_client(verified=True)
    first, second = intent(alice, 10_000), intent(alice, 20_000)

    deliver(local_psp, first.provider_id, "complete")
    deliver(local_psp, second.provider_id, "complete")

    assert queries.get_deposit(first.id).status == "confirmed"
    assert queries.get_deposit(second.id).status == "held"
    assert "velocity" in queries.get_deposit(second.id).hold_reason
    assert (wallet(alice.pk), wallet(alice.pk, bucket="pending")) == (10_000, 20_000)


@LOCAL
def test_a_deposit_fee_is_an_explicit_posting_to_fee_income(local_psp):
    services.set_rules(deposit_fee_bps=250, deposit_fee_fixed=10)
    alice = new_client(verified=True)
    deposit = intent(alice, 100_000)

    deliver(local_psp, deposit.provider_id, "complete")

    income = ledger.system_account("fee_income", "USD")
    assert ledger_queries.balance(income.id).posted == 2_510
    assert wallet(alice.pk) == 100_000 - 2_510
    assert queries.get_deposit(deposit.id).fee == 2_510


@LOCAL
def test_a_chargeback_reverses_every_posting_by_linked_compensation(local_psp):
    services.set_rules(deposit_fee_bps=100)
    alice = new_client(verified=True)
    deposit = intent(alice, 100_000)
    deliver(local_psp, deposit.provider_id, "complete")
    row = Deposit.objects.get(pk=deposit.id)

    deliver(local_psp, row.provider_id, "chargeback")

    assert queries.get_deposit(deposit.id).status == "reversed"
    assert wallet(alice.pk) == 0 and wallet(alice.pk, bucket="pending") == 0
    assert clearing() == 0
    assert ledger_queries.balance(ledger.system_account("fee_income", "USD").id).posted == 0
    reversals = queries.timeline(deposit.id)[-1].data["reversals"]
    assert set(reversals) == {"release", "fee", "credit"}
    assert OutboxEvent.objects.filter(type="deposit.reversed").count() == 1
    assert ledger_queries.replay_ledger().clean


@LOCAL
def test_a_chargeback_after_the_money_left_the_wallet_goes_to_the_exceptions_queue(local_psp):
    alice = new_client(verified=True)
    deposit = intent(alice, 100_000)
    deliver(local_psp, deposit.provider_id, "complete")
    trading = ledger.system_account("platform_clearing", "USD")
    ledger.transfer(
        "to-mt5-1",
        debit_account=ledger.wallet_account(alice.pk, "USD").id,
        credit_account=trading.id,
        amount=60_000,
        currency="USD",
        kind="wallet_to_trading",
    )
    row = Deposit.objects.get(pk=deposit.id)

    deliver(local_psp, row.provider_id, "chargeback")

    assert queries.get_deposit(deposit.id).status == "confirmed"
    assert wallet(alice.pk) == 40_000
    exception = ReconciliationException.objects.get()
    assert exception.kind == "chargeback_unfunded" and exception.reference == row.reference


@LOCAL
def test_a_declined_payment_fails_the_deposit_and_posts_nothing(local_psp):
    local_psp.faults.update({"decline": True})
    alice = new_client(verified=True)
    deposit = intent(alice, 100_000)

    deliver(local_psp, deposit.provider_id, "complete")

    assert queries.get_deposit(deposit.id).status == "failed"
    assert wallet(alice.pk) == 0 and clearing() == 0


@LOCAL
def test_an_unverified_client_deposits_only_up_to_the_jurisdictions_limit(local_psp):
    bob = new_client(verified=False)  # CySEC-like: 2,000.00 USD before verification
    first = intent(bob, 150_000)
    deliver(local_psp, first.provider_id, "complete")

    with pytest.raises(PermissionDenied) as refused:
        intent(bob, 60_000)

    assert refused.value.code == "pre_verification_limit"
    assert "50000 remain" in refused.value.message
    assert Deposit.objects.filter(client_id=bob.pk).count() == 1


@LOCAL
def test_the_same_request_id_returns_the_first_intent(local_psp):
    alice = new_client(verified=True)
    first = intent(alice, 100_000, request_id="r-1")

    again = intent(alice, 100_000, request_id="r-1")

    assert again.replayed and again.id == first.id
    assert Deposit.objects.count() == 1
    with pytest.raises(Conflict) as conflict:
        intent(alice, 200_000, request_id="r-1")
    assert conflict.value.code == "idempotency_conflict"


@LOCAL
def test_a_confirmed_deposit_cannot_be_released_again(local_psp):
    alice = new_client(verified=True)
    deposit = intent(alice, 100_000)
    deliver(local_psp, deposit.provider_id, "complete")

    with pytest.raises(IllegalTransition):
        services.release_deposit(deposit.id, by="system:test", reason="again")
    assert wallet(alice.pk) == 100_000


@LIVE
def test_delayed_and_reordered_webhooks_still_post_each_deposit_once(sandbox):
    sandbox.faults.update({"reorder": True, "delay_ms": 50, "fail_deliveries": 1})
    alice = new_client(verified=True)
    first, second = intent(alice, 10_000), intent(alice, 20_000)
    rows = [Deposit.objects.get(pk=d.id) for d in (first, second)]

    for row in rows:
        sandbox.act(row.provider_id, "complete")
    assert sandbox.wait_idle(10)

    assert wallet(alice.pk) == 30_000
    assert {queries.get_deposit(d.id).status for d in (first, second)} == {"confirmed"}


@LOCAL
def test_an_unknown_reference_is_recorded_and_queued_not_posted(local_psp):
    body, headers = signed(
        {
            "id": "evt_ghost",
            "type": "payment.succeeded",
            "data": {
                "object": {
                    "id": "pay_x",
                    "reference": "dep_nobody",
                    "amount": 5,
                    "currency": "USD",
                    "status": "succeeded",
                }
            },
        }
    )

    assert services.receive_webhook("sandbox", body, headers) == "unmatched"
    assert ReconciliationException.objects.get().kind == "unmatched_webhook"
    assert clearing() == 0


@pytest.mark.django_db
def test_an_intent_cut_off_before_the_psp_answered_is_finished_by_the_retry(local_psp):
    """A crash between our row and the PSP's answer (the PostgreSQL-restart drill found it)
    leaves an initiated intent without a payment; the client's retry with the same request
    id finishes it, and the PSP holds one payment for the reference, not two."""
    from brokerdesk.payments import connectors as registry
    from brokerdesk.payments.connectors.sandbox import SandboxConnector

    client = new_client(verified=True)
    real = registry.get("sandbox")
    assert isinstance(real, SandboxConnector)

    class CutOff(SandboxConnector):
        def create_deposit(self, **kwargs: Any) -> Any:
            real.create_deposit(**kwargs)  # the PSP made the payment…
            raise ConnectionResetError("…but its answer never arrived")

    registry.register(CutOff(base_url=local_psp.url, api_key=API_KEY, webhook_secret=SECRET))
    request = {"amount": 20_000, "currency": "USD", "request_id": f"cut-{client.pk}"}
    with pytest.raises(ConnectionResetError):
        services.create_deposit_intent(client.pk, by="system:test", **request)
    stuck = Deposit.objects.get(request_key=request["request_id"])
    assert (stuck.status, stuck.provider_id) == ("initiated", "")

    registry.register(real)
    retried = services.create_deposit_intent(client.pk, by="system:test", **request)

    assert retried.status == "pending" and retried.provider_id.startswith("pay_")
    same_reference = [o for o in local_psp.objects.values() if o["reference"] == stuck.reference]
    assert [o["id"] for o in same_reference] == [retried.provider_id]
    assert deliver(local_psp, retried.provider_id, "complete") == "confirmed"
    assert wallet(client.pk) == 20_000
