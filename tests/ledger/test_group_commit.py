"""Group commit: many threads, shared transactions, each caller answered on its own."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from brokerdesk.ledger import errors, queries
from brokerdesk.ledger.grouping import GroupCommitter
from brokerdesk.ledger.models import Transfer
from brokerdesk.ledger.services import TransferRequest, credit, debit, system_account

from .conftest import deposit, unique

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_requests_share_batches_and_each_gets_its_own_answer(wallet):
    rich, poor = wallet(), wallet()
    deposit(rich, 10_000)
    clearing = system_account("psp_clearing", "USD", qualifier="sandbox")
    committer = GroupCommitter(max_batch=50, max_wait_ms=20)
    answers: dict[int, object] = {}

    def client(i: int) -> None:
        source = poor if i % 5 == 0 else rich
        request = TransferRequest(
            unique("gc"), "withdrawal", "USD", (debit(source.id, 100), credit(clearing.id, 100))
        )
        try:
            answers[i] = committer.post(request)
        except errors.InsufficientFunds as exc:
            answers[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    committer.close()

    refused = [i for i, a in answers.items() if isinstance(a, errors.InsufficientFunds)]
    assert sorted(refused) == list(range(0, 40, 5))
    assert queries.balance(rich.id).posted == 10_000 - 32 * 100
    assert committer.batches < 40  # requests were grouped
    assert queries.replay_ledger().clean


def test_a_repeated_key_through_the_committer_replays(wallet):
    account = wallet()
    clearing = system_account("psp_clearing", "USD", qualifier="sandbox")
    request = TransferRequest(
        unique("gc"), "deposit", "USD", (debit(clearing.id, 700), credit(account.id, 700))
    )
    committer = GroupCommitter()
    try:
        first = committer.post(request)
        again = committer.post(request)
    finally:
        committer.close()
    assert again.replayed and again.transfer_id == first.transfer_id
    assert Transfer.objects.filter(idempotency_key=request.idempotency_key).count() == 1


def test_post_gives_up_after_its_timeout_and_sees_a_failed_batch(wallet, monkeypatch):
    """A caller is not left waiting for ever, and a batch that fails whole (the database
    down) raises that error in every caller."""
    from brokerdesk.ledger import grouping

    account = wallet()
    clearing = system_account("psp_clearing", "USD", qualifier="sandbox")
    release = threading.Event()

    def stuck_then_down(units):  # type: ignore[no-untyped-def]
        release.wait(10)
        raise RuntimeError("database unavailable")

    monkeypatch.setattr(grouping, "post_batch", stuck_then_down)
    committer = GroupCommitter(max_wait_ms=1)
    request = TransferRequest(
        unique("gc"), "deposit", "USD", (debit(clearing.id, 5), credit(account.id, 5))
    )
    try:
        with pytest.raises(TimeoutError):
            committer.post(request, timeout=0.2)
        release.set()
        with pytest.raises(RuntimeError, match="database unavailable"):
            committer.post(request, timeout=10)
    finally:
        release.set()
        committer.close()
    assert not Transfer.objects.filter(idempotency_key=request.idempotency_key).exists()
