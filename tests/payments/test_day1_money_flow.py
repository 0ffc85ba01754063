"""The day-1 money flow, payments part (shared/seeds/day1-money-flow.txt), end to end over HTTP:
client → sandbox PSP → signed webhooks → Brokerdesk's endpoint → ledger → settlement file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from brokerdesk.core.errors import PermissionDenied
from brokerdesk.ledger import queries as ledger_queries
from brokerdesk.payments import queries, services
from brokerdesk.payments.models import Deposit, InboxEvent
from brokerdesk.payments.reconciliation import reconcile_settlement
from tests.payments.conftest import new_client, pay, wallet

pytestmark = pytest.mark.django_db(transaction=True)


def test_day1_deposit_duplicate_webhook_refused_withdrawal_and_reconciliation(sandbox):
    # given a verified client, an unverified one, and a PSP that repeats its webhooks 200 ms later
    alice = new_client(verified=True)
    bob = new_client(verified=False)
    sandbox.faults.update({"duplicate": "delayed", "duplicate_delay_ms": 200})

    # when Alice deposits $1,000 by card through the sandbox PSP
    deposit = services.create_deposit_intent(
        alice.pk,
        amount=100_000,
        currency="USD",
        request_id="day1-deposit",
        by=f"client:{alice.pk}",
        method_token="card_4242",
    )
    pay(sandbox, deposit)

    # then her wallet is +1,000 available, and the duplicate webhook posted nothing
    assert wallet(alice.pk) == 100_000
    assert queries.get_deposit(deposit.id).status == "confirmed"
    assert len([d for d in sandbox.deliveries if d["status"] == 200]) == 2
    assert InboxEvent.objects.count() == 1
    assert queries.timeline(deposit.id)[-1].to_status == "confirmed"

    # and a withdrawal by the unverified client (who deposited $100) is refused with a reason
    bobs = services.create_deposit_intent(
        bob.pk,
        amount=10_000,
        currency="USD",
        request_id="day1-bob-deposit",
        by=f"client:{bob.pk}",
        method_token="card_5555",
    )
    pay(sandbox, bobs)
    with pytest.raises(PermissionDenied) as refused:
        services.request_withdrawal(
            bob.pk,
            amount=10_000,
            currency="USD",
            method_id=Deposit.objects.get(pk=bobs.id).method_id,
            request_id="day1-bob-withdrawal",
            by=f"client:{bob.pk}",
        )
    assert refused.value.code == "kyc_documents_pending"
    assert "needs a verified client" in refused.value.message
    assert wallet(bob.pk) == 10_000 and wallet(bob.pk, bucket="locked") == 0

    # when the PSP settles, the settlement file reconciles clean against the ledger
    batch = sandbox.settle(now=datetime.now(UTC) + timedelta(seconds=5))
    text = Path(batch["path"]).read_text()
    clean = reconcile_settlement(
        text, provider="sandbox", source=batch["path"], missing_grace=timedelta(0)
    )
    assert clean.clean and clean.matched == 2

    # and a tampered copy of the file raises an exception in the queue
    tampered = text.replace(",100000,", ",1000000,")
    assert tampered != text
    dirty = reconcile_settlement(tampered, provider="sandbox", source="tampered.csv")
    assert [e["kind"] for e in dirty.exceptions] == ["amount_mismatch"]
    assert [e.kind for e in queries.exceptions(status="new")] == ["amount_mismatch"]
    assert ledger_queries.replay_ledger().clean
