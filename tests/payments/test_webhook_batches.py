"""Webhooks processed many per transaction (``payments.webhooks``): the same outcomes, rows
and ledger postings as one by one, duplicates in and across batches, holds counted across
the batch, failures confined to their own event."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from brokerdesk.core import audit
from brokerdesk.core.errors import DomainError
from brokerdesk.core.models import AuditEntry, OutboxEvent
from brokerdesk.ledger import services as ledger
from brokerdesk.payments import queries, services, webhooks
from brokerdesk.payments.connectors.base import NormalizedEvent
from brokerdesk.payments.models import Deposit, InboxEvent, ReconciliationException
from tests.payments.conftest import new_client, wallet
from tests.payments.test_deposits import clearing, intent


def succeeded(deposit: Any, event_id: str, amount: int | None = None) -> NormalizedEvent:
    row = Deposit.objects.get(pk=deposit.id)
    return NormalizedEvent(
        provider="sandbox",
        event_id=event_id,
        kind="deposit.succeeded",
        reference=row.reference,
        provider_id=row.provider_id,
        amount=row.amount if amount is None else amount,
        currency=row.currency,
        status="succeeded",
        raw={"id": event_id},
    )


@pytest.mark.django_db
def test_a_batch_confirms_each_deposit_once_and_writes_what_one_by_one_writes(local_psp):
    alice, bob = new_client(verified=True), new_client(verified=True)
    a1, a2, b1 = intent(alice, 10_000), intent(alice, 20_000, request_id="a2"), intent(bob, 5_000)
    stray = NormalizedEvent(
        "sandbox", "evt_stray", "deposit.succeeded", "dep_nope", "x", 1, "USD", "ok"
    )
    events = [
        succeeded(a1, "evt_a1"),
        succeeded(a1, "evt_a1"),  # the same delivery twice in one batch
        succeeded(a2, "evt_a2"),
        succeeded(b1, "evt_b1", amount=5_001),  # not what the intent says
        stray,
    ]

    outcomes = webhooks.process_events(events)

    assert outcomes == ["confirmed", "duplicate", "confirmed", "amount_mismatch", "unmatched"]
    assert webhooks.process_events([succeeded(a2, "evt_a2")]) == ["duplicate"]
    assert webhooks.process_events([succeeded(a2, "evt_a2_again")]) == ["already_confirmed"]
    assert wallet(alice.pk) == 30_000 and wallet(bob.pk) == 0
    assert clearing() == -30_000
    for d in (a1, a2):
        steps = [(s.from_status, s.to_status) for s in queries.timeline(d.id)]
        assert steps[-1] == ("pending", "confirmed")
    assert AuditEntry.objects.filter(action="payments.deposit.confirmed").count() == 2
    assert OutboxEvent.objects.filter(type="deposit.confirmed").count() == 2
    assert set(InboxEvent.objects.values_list("event_id", "outcome")) == {
        ("evt_a1", "confirmed"),
        ("evt_a2", "confirmed"),
        ("evt_b1", "amount_mismatch"),
        ("evt_stray", "unmatched"),
        ("evt_a2_again", "already_confirmed"),
    }
    assert set(ReconciliationException.objects.values_list("kind", flat=True)) == {
        "webhook_amount_mismatch",
        "unmatched_webhook",
    }
    assert audit.verify_chain().ok


@pytest.mark.django_db
def test_velocity_counts_the_deposits_confirmed_earlier_in_the_same_batch(local_psp):
    services.set_rules(velocity_max_count=1, velocity_window=timedelta(hours=1))
    alice = new_client(verified=True)
    first, second = intent(alice, 10_000), intent(alice, 20_000, request_id="second")

    outcomes = webhooks.process_events([succeeded(first, "e1"), succeeded(second, "e2")])

    assert outcomes == ["confirmed", "held"]
    assert wallet(alice.pk) == 10_000 and wallet(alice.pk, bucket="pending") == 20_000
    assert Deposit.objects.get(pk=second.id).hold_reason.startswith("velocity")


@pytest.mark.django_db
def test_two_events_of_one_deposit_in_a_batch_are_processed_in_order(local_psp):
    alice = new_client(verified=True)
    deposit = intent(alice, 10_000)
    chargeback = NormalizedEvent(
        "sandbox",
        "evt_cb",
        "deposit.chargeback",
        Deposit.objects.get(pk=deposit.id).reference,
        "x",
        10_000,
        "USD",
        "lost",
    )

    outcomes = webhooks.process_events([succeeded(deposit, "evt_ok"), chargeback])

    assert outcomes == ["confirmed", "reversed"]
    assert wallet(alice.pk) == 0


@pytest.mark.django_db
def test_a_failing_confirmation_fails_alone_and_leaves_no_inbox_row(local_psp):
    alice = new_client(verified=True)
    good, bad = intent(alice, 10_000), intent(alice, 20_000, request_id="bad")
    reference = Deposit.objects.get(pk=bad.id).reference
    ledger.transfer(  # the ledger key of bad's credit, taken by another request
        f"deposit:{reference}:credit",
        debit_account=ledger.system_account("suspense", "USD").id,
        credit_account=ledger.system_account("fee_income", "USD").id,
        amount=1,
        currency="USD",
        kind="test",
    )

    outcomes = webhooks.process_events([succeeded(good, "g"), succeeded(bad, "b")])

    assert outcomes[0] == "confirmed" and isinstance(outcomes[1], DomainError)
    assert not InboxEvent.objects.filter(event_id="b").exists()  # a retry is processed
    assert Deposit.objects.get(pk=bad.id).status == "pending"
    assert wallet(alice.pk) == 10_000
    with pytest.raises(DomainError):
        webhooks.receive(succeeded(bad, "b"))


@pytest.mark.django_db(transaction=True)
def test_concurrent_callers_share_batches_and_post_each_deposit_once(local_psp):
    services.set_rules(velocity_max_count=100)
    alice = new_client(verified=True)
    deposits = [intent(alice, 1_000 + n, request_id=f"c{n}") for n in range(20)]
    events = [succeeded(d, f"evt_{n}") for n, d in enumerate(deposits)] * 2
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def deliver(chunk: list[NormalizedEvent]) -> None:
        try:
            barrier.wait()
            outcomes.extend(webhooks.receive(e) for e in chunk)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver, args=(events[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    webhooks.stop_processor()

    assert sorted(outcomes) == ["confirmed"] * 20 + ["duplicate"] * 20, outcomes
    assert wallet(alice.pk) == sum(1_000 + n for n in range(20))
    assert audit.verify_chain().ok
