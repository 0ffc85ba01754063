"""The engine's shortcuts give what the plain forms give: fingerprints, results, the chunk
schedule of a pipelined batch, and the entry key on PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta
from types import MappingProxyType

import pytest
from django.db import connection

from brokerdesk.ledger import errors, queries, services
from brokerdesk.ledger.models import Entry
from brokerdesk.ledger.services import TransferRequest, credit, debit

from .conftest import unique

pytestmark = pytest.mark.django_db

REQUESTS = [
    TransferRequest(
        "k1", "deposit", "USD", (debit(uuid.uuid4(), 5), credit(uuid.uuid4(), 5)), metadata={}
    ),
    TransferRequest(
        "k2",
        "fx_sell",
        "EUR",
        (debit(uuid.uuid4(), 7), credit("an-id-given-as-text", 3), credit(uuid.uuid4(), 4)),
        pending=True,
        timeout=timedelta(seconds=30),
        metadata=MappingProxyType({"b": {"z": 1, "a": [uuid.uuid4()]}, "a": "Zahlung für Anna"}),
        reason="why",
        reverses=uuid.uuid4(),
    ),
]


@pytest.mark.parametrize("request_", REQUESTS)
def test_the_fingerprint_is_the_hash_of_the_fingerprint_data(request_):
    """``fingerprint`` skips the ``str()`` of every id; the hash must not change for it."""
    assert request_.fingerprint() == services._hash_json(request_.fingerprint_data())


def test_a_result_built_at_once_equals_one_built_by_its_constructor(wallet):
    account = wallet()
    result = services.post_transfer(
        TransferRequest(
            unique("dep"),
            "deposit",
            "USD",
            (
                debit(services.system_account("psp_clearing", "USD").id, 10),
                credit(account.id, 10),
            ),
        )
    )
    plain = services.TransferResult(**result.__dict__)

    assert result == plain and hash(result) == hash(plain) and repr(result) == repr(plain)
    with pytest.raises(AttributeError):
        result.amount = 11  # type: ignore[misc]  # still frozen


def _schedule(transfers: int, legs: int = 2) -> list[int]:
    """The chunk sizes (entries) ``run`` sends for a batch of equal transfers."""
    sizes, sent, pending = [], 0, 0
    for _ in range(transfers):
        pending += legs
        if pending >= services._chunk_limit(sent):
            sizes.append(pending)
            sent, pending = sent + pending, 0
    return [*sizes, pending] if pending else sizes


def test_a_pipelined_batch_starts_with_a_small_chunk_and_doubles():
    assert _schedule(2_000) == [100, 200, 600, 600, 600, 600, 600, 600, 100]
    assert _schedule(400) == [100, 200, 500]


def test_the_chunk_limit_never_exceeds_the_configured_size(monkeypatch):
    monkeypatch.setattr(services, "PIPELINE_CHUNK_ENTRIES", 5)

    assert {services._chunk_limit(sent) for sent in (0, 10, 10**6)} == {5}


def test_a_failed_unit_leaves_no_trace_in_balances_or_chains(wallet):
    """A unit that fails after moving money in memory is undone (counters and hash chain
    heads), and the units after it post on the restored state."""
    poor, rich = wallet(), wallet()
    clearing = services.system_account("psp_clearing", "USD", qualifier="sandbox")
    units = [
        [
            TransferRequest(
                unique("d"), "deposit", "USD", (debit(clearing.id, 50), credit(rich.id, 50))
            )
        ],
        [
            TransferRequest(unique("a"), "x", "USD", (debit(rich.id, 20), credit(poor.id, 20))),
            TransferRequest(unique("b"), "x", "USD", (debit(poor.id, 999), credit(rich.id, 999))),
        ],
        [TransferRequest(unique("c"), "x", "USD", (debit(rich.id, 30), credit(poor.id, 30)))],
    ]

    outcomes = services.post_batch(units)

    assert isinstance(outcomes[1][1], errors.InsufficientFunds)
    assert isinstance(outcomes[1][0], errors.LinkedTransferFailed)
    assert [queries.balance(a.id).posted for a in (rich, poor)] == [20, 30]
    assert queries.replay_ledger().clean


def test_postgres_finds_a_transfers_entries_by_the_primary_key(wallet, on_postgres):
    if not on_postgres:
        pytest.skip("the entry key is PostgreSQL's (partitioned table)")
    account = wallet()
    clearing = services.system_account("psp_clearing", "USD", qualifier="sandbox")
    result = services.transfer(
        unique("dep"),
        debit_account=clearing.id,
        credit_account=account.id,
        amount=10,
        currency="USD",
        kind="deposit",
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'ledger_entry' ORDER BY 1"
        )
        indexes = [name for (name,) in cursor.fetchall()]
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(
            "EXPLAIN SELECT * FROM ledger_entry WHERE transfer_id = %s", [result.transfer_id]
        )
        plan = "\n".join(row for (row,) in cursor.fetchall())

    assert indexes == ["ledger_entry_acct_time", "ledger_entry_pkey"]
    assert "ledger_entry_p" in plan and "pkey" in plan
    assert Entry.objects.filter(transfer_id=result.transfer_id).count() == 2


def test_requests_found_invalid_while_the_accounts_are_locked_fail_alone(wallet):
    """On PostgreSQL requests are validated while the server locks the accounts all of them
    name; whatever is wrong with one (even its key or account id) fails only its unit."""
    account = wallet()
    clearing = services.system_account("psp_clearing", "USD", qualifier="sandbox")

    def deposit_of(key: object, amount: object, to: object = None) -> TransferRequest:
        legs = (debit(clearing.id, amount), credit(to or account.id, amount))  # type: ignore[arg-type]
        return TransferRequest(key, "deposit", "USD", legs)  # type: ignore[arg-type]

    units = [
        [deposit_of(unique("ok"), 10)],
        [deposit_of(unique("zero"), 0)],
        [deposit_of(None, 10)],
        [deposit_of(unique("text-id"), 10, to="not-a-uuid")],
        [deposit_of(unique("ok"), 20)],
    ]

    outcomes = services.post_batch(units)

    assert [type(o).__name__ for (o,) in outcomes] == [
        "TransferResult",
        "InvalidAmount",
        "ValidationError",
        "AccountNotFound",
        "TransferResult",
    ]
    assert queries.balance(account.id).posted == 30
