"""Transfers: posting, idempotency, pending transfers, linked chains, reversals, FX, holds,
and a clear error for every rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from brokerdesk.core import clock
from brokerdesk.core.errors import ValidationError
from brokerdesk.core.models import OutboxEvent
from brokerdesk.ledger import errors, queries, services
from brokerdesk.ledger.events import TransfersPosted
from brokerdesk.ledger.models import Entry, Transfer
from brokerdesk.ledger.services import ResolveRequest, TransferRequest, credit, debit

from .conftest import deposit, unique, withdraw

pytestmark = pytest.mark.django_db


def test_deposit_credits_the_wallet_and_debits_psp_clearing(wallet, psp):
    account = wallet()

    result = deposit(account, 100_000)

    assert result.phase == "posted" and not result.replayed
    assert queries.balance(account.id).posted == 100_000
    assert queries.balance(account.id).available == 100_000
    assert queries.balance(psp().id).posted <= -100_000
    event = OutboxEvent.objects.get(aggregate_id=str(result.transfer_id))
    assert event.type == "ledger.transfers_posted"
    (posted,) = TransfersPosted.rows(event.payload)
    assert posted["id"] == str(result.transfer_id) and posted["amount"] == 100_000
    assert sorted((leg["side"], leg["amount"], leg["account_id"]) for leg in posted["legs"]) == [
        ("C", 100_000, str(account.id)),
        ("D", 100_000, str(psp().id)),
    ]


def test_same_key_same_request_returns_the_first_result_and_posts_nothing(wallet):
    account = wallet()
    first = deposit(account, 5_000, key="psp:evt_1")

    again = deposit(account, 5_000, key="psp:evt_1")

    assert again.replayed and again.transfer_id == first.transfer_id
    assert queries.balance(account.id).posted == 5_000
    assert Transfer.objects.filter(idempotency_key="psp:evt_1").count() == 1


def test_same_key_different_request_is_a_conflict(wallet):
    account = wallet()
    deposit(account, 5_000, key="psp:evt_2")

    with pytest.raises(errors.IdempotencyConflict) as caught:
        deposit(account, 6_000, key="psp:evt_2")

    assert caught.value.field == "idempotency_key"
    assert "different request" in caught.value.message
    assert queries.balance(account.id).posted == 5_000


def test_overdraft_is_refused_with_the_available_amount(wallet):
    account = wallet()
    deposit(account, 1_000)

    with pytest.raises(errors.InsufficientFunds) as caught:
        withdraw(account, 1_001)

    assert "1000 USD available" in caught.value.message and "needs 1001" in caught.value.message
    assert queries.balance(account.id).posted == 1_000


@pytest.mark.parametrize("amount", [0, -5])
def test_zero_or_negative_amount_is_refused(wallet, psp, amount):
    with pytest.raises(errors.InvalidAmount) as caught:
        services.transfer(
            unique(),
            debit_account=psp().id,
            credit_account=wallet().id,
            amount=amount,
            currency="USD",
            kind="deposit",
        )
    assert caught.value.field == "legs[0].amount"
    assert "positive" in caught.value.message


def test_float_amount_is_refused(wallet, psp):
    with pytest.raises(errors.InvalidAmount) as caught:
        services.transfer(
            unique(),
            debit_account=psp().id,
            credit_account=wallet().id,
            amount=10.5,  # type: ignore[arg-type]
            currency="USD",
            kind="deposit",
        )
    assert caught.value.code == "not_integer"


def test_unknown_currency_is_refused(wallet, psp):
    with pytest.raises(ValidationError) as caught:
        services.transfer(
            unique(),
            debit_account=psp().id,
            credit_account=wallet().id,
            amount=1,
            currency="XYZ",
            kind="deposit",
        )
    assert caught.value.code == "unknown_currency" and caught.value.field == "currency"


def test_unbalanced_transfer_is_refused_and_nothing_is_written(wallet, psp):
    before = Transfer.objects.count()
    request = TransferRequest(
        unique(), "adjustment", "USD", (debit(psp().id, 100), credit(wallet().id, 90))
    )
    with pytest.raises(errors.Unbalanced) as caught:
        services.post_transfer(request)
    assert "differ by 10" in caught.value.message
    assert Transfer.objects.count() == before


def test_mixed_currencies_without_fx_are_refused(wallet, psp):
    eur_wallet = wallet("EUR")
    with pytest.raises(errors.MixedCurrencies) as caught:
        services.transfer(
            unique(),
            debit_account=psp("USD").id,
            credit_account=eur_wallet.id,
            amount=100,
            currency="USD",
            kind="deposit",
        )
    assert "convert through FX" in caught.value.message
    assert queries.balance(eur_wallet.id).posted == 0


def test_unknown_account_is_refused(psp):
    with pytest.raises(errors.AccountNotFound):
        services.transfer(
            unique(),
            debit_account=psp().id,
            credit_account=services.new_id(),
            amount=1,
            currency="USD",
            kind="deposit",
        )


def test_pending_transfer_reserves_then_posts_a_smaller_amount(wallet):
    account = wallet()
    deposit(account, 1_000)
    clearing = services.system_account("psp_clearing", "USD", qualifier="sandbox")
    pending = services.transfer(
        unique(),
        debit_account=account.id,
        credit_account=clearing.id,
        amount=400,
        currency="USD",
        kind="withdrawal",
        pending=True,
    )
    reserved = queries.balance(account.id)
    assert (reserved.posted, reserved.pending_out, reserved.available) == (1_000, 400, 600)

    posted = services.post_pending(pending.transfer_id, unique(), amount=300)

    after = queries.balance(account.id)
    assert posted.phase == "post_pending" and posted.amount == 300
    assert (after.posted, after.pending_out, after.available) == (700, 0, 700)


def test_void_releases_the_reservation(wallet):
    account = wallet()
    deposit(account, 1_000)
    held = services.place_hold(unique(), account=account, amount=250, reason="AML review")
    assert queries.balance(account.id).available == 750

    services.void_pending(held.transfer_id, unique(), reason="cleared")

    assert queries.balance(account.id).available == 1_000


def test_posting_a_voided_transfer_is_refused(wallet):
    account = wallet()
    deposit(account, 1_000)
    held = services.place_hold(unique(), account=account, amount=100, reason="check")
    services.void_pending(held.transfer_id, unique())

    with pytest.raises(errors.PendingResolved) as caught:
        services.post_pending(held.transfer_id, unique())

    assert "already resolved (void_pending)" in caught.value.message
    assert queries.balance(account.id).posted == 1_000


def test_posting_an_expired_pending_transfer_is_refused_and_expiry_releases_it(wallet):
    account = wallet()
    deposit(account, 1_000)
    start = clock.now()
    with clock.frozen(start):
        held = services.place_hold(
            unique(),
            account=account,
            amount=100,
            reason="transfer to MT5",
            timeout=timedelta(seconds=30),
        )
    with clock.frozen(start + timedelta(seconds=31)):
        with pytest.raises(errors.PendingExpired):
            services.post_pending(held.transfer_id, unique())
        assert services.expire_pending_transfers() >= 1

    assert queries.balance(account.id).available == 1_000
    assert Transfer.objects.get(pending_id=held.transfer_id).phase == "expire_pending"


def test_posting_more_than_was_reserved_is_refused(wallet):
    account = wallet()
    deposit(account, 1_000)
    held = services.place_hold(unique(), account=account, amount=100, reason="check")
    with pytest.raises(errors.InvalidAmount):
        services.post_pending(held.transfer_id, unique(), amount=101)


def test_linked_chain_fails_as_one(wallet, psp):
    a, b = wallet(), wallet()
    deposit(a, 500)
    chain = [
        TransferRequest(unique(), "internal", "USD", (debit(a.id, 300), credit(b.id, 300))),
        TransferRequest(unique(), "fee", "USD", (debit(a.id, 300), credit(psp().id, 300))),
    ]

    with pytest.raises(errors.InsufficientFunds):
        services.post_linked(chain)

    assert queries.balance(a.id).posted == 500 and queries.balance(b.id).posted == 0
    assert not Transfer.objects.filter(idempotency_key=chain[0].idempotency_key).exists()


def test_batch_reports_each_failure_without_blocking_the_others(wallet):
    rich, poor = wallet(), wallet()
    deposit(rich, 1_000)
    clearing = services.system_account("psp_clearing", "USD", qualifier="sandbox")
    units = [
        [
            TransferRequest(
                unique(), "withdrawal", "USD", (debit(rich.id, 100), credit(clearing.id, 100))
            )
        ],
        [
            TransferRequest(
                unique(), "withdrawal", "USD", (debit(poor.id, 100), credit(clearing.id, 100))
            )
        ],
        [
            TransferRequest(
                unique(), "withdrawal", "USD", (debit(rich.id, 900), credit(clearing.id, 900))
            )
        ],
        [
            TransferRequest(
                unique(), "withdrawal", "USD", (debit(rich.id, 1), credit(clearing.id, 1))
            )
        ],
    ]

    outcomes = services.post_batch(units)

    kinds = [type(o[0]).__name__ for o in outcomes]
    assert kinds == ["TransferResult", "InsufficientFunds", "TransferResult", "InsufficientFunds"]
    assert queries.balance(rich.id).posted == 0


def test_reversal_mirrors_the_original_once_and_is_audited(wallet):
    from brokerdesk.core.models import AuditEntry

    account = wallet()
    original = deposit(account, 700)

    reversal = services.reverse(
        original.transfer_id, unique(), reason="chargeback", actor="user:finance-1"
    )

    assert queries.balance(account.id).posted == 0
    stored = Transfer.objects.get(id=reversal.transfer_id)
    assert stored.reverses_id == original.transfer_id and stored.kind == "reversal:deposit"
    assert AuditEntry.objects.filter(
        action="ledger.reverse", object_id=str(original.transfer_id)
    ).exists()
    with pytest.raises(errors.AlreadyReversed):
        services.reverse(original.transfer_id, unique(), reason="again")


def test_fx_conversion_posts_rate_and_fee_explicitly(wallet):
    usd, eur = wallet("USD"), wallet("EUR")
    deposit(usd, 100_00)

    result = services.convert(
        unique(),
        from_account=usd,
        to_account=eur,
        sell_amount=100_00,
        rate=Decimal("0.9235"),
        fee_bps=50,
    )

    assert result.gross_buy_amount == 92_35
    assert result.fee_amount == 47  # 0.5% of 92.35 = 0.46175, rounded up
    assert queries.balance(eur.id).posted == 92_35 - 47
    assert queries.balance(usd.id).posted == 0
    linked = {result.sold.linked_id, result.bought.linked_id, result.fee and result.fee.linked_id}
    assert len(linked) == 1 and None not in linked
    assert Transfer.objects.get(id=result.bought.transfer_id).metadata["rate"] == "0.9235"


def test_fx_conversion_with_too_little_money_writes_nothing(wallet):
    usd, eur = wallet("USD"), wallet("EUR")
    deposit(usd, 50)
    before = Transfer.objects.count()
    with pytest.raises(errors.InsufficientFunds):
        services.convert(unique(), from_account=usd, to_account=eur, sell_amount=60, rate="0.9")
    assert Transfer.objects.count() == before


def test_balance_as_of_and_statement(wallet):
    account = wallet()
    t0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    with clock.frozen(t0):
        deposit(account, 1_000)
    with clock.frozen(t0 + timedelta(hours=1)):
        withdraw(account, 300)
    with clock.frozen(t0 + timedelta(hours=2)):
        deposit(account, 50)

    assert queries.balance_as_of(account.id, t0 - timedelta(seconds=1)) == 0
    assert queries.balance_as_of(account.id, t0 + timedelta(minutes=90)) == 700
    report = queries.statement(account.id, t0 + timedelta(minutes=30), t0 + timedelta(hours=3))
    assert report.opening == 1_000 and report.closing == 750
    assert [(line.debit, line.credit, line.balance) for line in report.lines] == [
        (300, 0, 700),
        (0, 50, 750),
    ]


def test_resolution_of_unknown_pending_is_refused():
    with pytest.raises(errors.PendingNotFound):
        services.post_transfer(ResolveRequest(unique(), services.new_id(), "post"))


def test_replay_is_clean_after_activity(wallet):
    a = wallet()
    deposit(a, 1_000)
    withdraw(a, 100)
    services.place_hold(unique(), account=a, amount=50, reason="x")

    report = queries.replay_ledger()

    assert report.clean, report.differences


def test_replay_reports_a_tampered_balance(wallet):
    from brokerdesk.ledger.models import LedgerAccount

    a = wallet()
    deposit(a, 1_000)
    LedgerAccount.objects.filter(id=a.id).update(credits_posted=2_000)

    report = queries.replay_ledger()

    assert not report.clean
    assert any(
        d.account_id == str(a.id) and d.field == "credits_posted" for d in report.differences
    )


def test_entries_cannot_be_updated(wallet):
    from django.db import DatabaseError, transaction

    a = wallet()
    deposit(a, 1_000)
    with pytest.raises(DatabaseError), transaction.atomic():
        Entry.objects.filter(account_id=a.id).update(amount=1)
    with pytest.raises(DatabaseError), transaction.atomic():
        Transfer.objects.filter(entries__account_id=a.id).update(kind="other")


def test_replay_ledger_command_prints_a_clean_report(wallet, capsys):
    from django.core.management import call_command

    deposit(wallet(), 10)
    call_command("replay_ledger", "--json")
    out = capsys.readouterr().out
    assert '"clean": true' in out


def _rogue_transfer(currency: str = "USD") -> Transfer:
    return Transfer.objects.create(
        idempotency_key=unique(),
        request_hash="x",
        kind="rogue",
        currency=currency,
        amount=5,
        phase="posted",
        created_at=clock.now(),
    )


def test_postgres_refuses_an_unbalanced_transfer_written_around_the_service(wallet, on_postgres):
    """The statement-level trigger is PostgreSQL's; on SQLite the service check is the guard."""
    from django.db import DatabaseError, transaction

    if not on_postgres:
        pytest.skip("statement-level triggers with transition tables are a PostgreSQL feature")
    a = wallet()
    with pytest.raises(DatabaseError, match="does not balance"), transaction.atomic():
        t = _rogue_transfer()
        Entry.objects.create(transfer=t, account=a, side="C", amount=5, created_at=t.created_at)


def test_postgres_refuses_entries_naming_missing_rows_or_another_currency(wallet, on_postgres):
    """What the foreign keys guarded, the statement-level trigger guards on PostgreSQL."""
    import uuid

    from django.db import DatabaseError, transaction

    if not on_postgres:
        pytest.skip("statement-level triggers with transition tables are a PostgreSQL feature")
    usd, eur = wallet("USD"), wallet("EUR")
    other = wallet("USD")
    with (
        pytest.raises(DatabaseError, match=r"account .* that does not exist"),
        transaction.atomic(),
    ):
        t = _rogue_transfer()
        Entry.objects.bulk_create(
            [
                Entry(
                    transfer=t, account_id=uuid.uuid4(), side="D", amount=5, created_at=t.created_at
                ),
                Entry(transfer=t, account=usd, side="C", amount=5, created_at=t.created_at),
            ]
        )
    with (
        pytest.raises(DatabaseError, match=r"transfer .* that does not exist"),
        transaction.atomic(),
    ):
        Entry.objects.create(
            transfer_id=uuid.uuid4(), account=usd, side="C", amount=5, created_at=clock.now()
        )
    with pytest.raises(DatabaseError, match="EUR account in a USD transfer"), transaction.atomic():
        t = _rogue_transfer("USD")
        Entry.objects.bulk_create(
            [
                Entry(transfer=t, account=eur, side="D", amount=5, created_at=t.created_at),
                Entry(transfer=t, account=other, side="C", amount=5, created_at=t.created_at),
            ]
        )
    t = _rogue_transfer("USD")  # and a balanced pair in one statement is accepted
    Entry.objects.bulk_create(
        [
            Entry(transfer=t, account=other, side="D", amount=5, created_at=t.created_at),
            Entry(transfer=t, account=usd, side="C", amount=5, created_at=t.created_at),
        ]
    )
    assert Entry.objects.filter(transfer=t).count() == 2


def test_postgres_keeps_a_ledger_account_that_has_entries(wallet, on_postgres):
    from django.db import DatabaseError, connection, transaction

    from brokerdesk.ledger.models import LedgerAccount

    if not on_postgres:
        pytest.skip("the delete guard is a PostgreSQL trigger (SQLite keeps its foreign key)")
    used, unused = wallet(), wallet()
    deposit(used, 100)
    delete = "DELETE FROM ledger_ledgeraccount WHERE id = %s"  # around the ORM's own guard
    with (
        pytest.raises(DatabaseError, match="has entries"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(delete, [used.id])
    with connection.cursor() as cursor:
        cursor.execute(delete, [unused.id])
    assert not LedgerAccount.objects.filter(id=unused.id).exists()


def test_the_worker_job_expires_overdue_pending_transfers(wallet):
    from brokerdesk.core.periodic import jobs, run_due

    account = wallet()
    deposit(account, 1_000)
    start = clock.now()
    with clock.frozen(start):
        services.place_hold(
            unique(), account=account, amount=600, reason="x", timeout=timedelta(seconds=5)
        )
    import brokerdesk.ledger.consumers  # noqa: F401 - registers the jobs

    assert "ledger.expire_pending" in jobs()
    with clock.frozen(start + timedelta(seconds=6)):
        assert "ledger.expire_pending" in run_due(now=10**9)
    assert queries.balance(account.id).available == 1_000


def test_open_accounts_creates_the_missing_ones_and_returns_the_rest():
    from brokerdesk.ledger.models import LedgerAccount

    existing = services.open_account("ib", unique("ib"), "USD", "payable")
    new_owner = unique("ib")
    ids = services.open_accounts("ib", [existing.owner_id, new_owner], "USD", "payable")

    assert ids[existing.owner_id] == existing.id
    created = LedgerAccount.objects.get(id=ids[new_owner])
    assert (created.currency, created.bucket, created.no_negative) == ("USD", "payable", False)
    assert services.open_accounts("ib", [new_owner], "USD", "payable") == {new_owner: created.id}


def test_open_accounts_refuses_an_unknown_bucket_or_owner_type_before_writing():
    from brokerdesk.ledger.models import LedgerAccount

    before = LedgerAccount.objects.count()
    with pytest.raises(ValidationError) as bucket:
        services.open_accounts("ib", [unique("ib")], "USD", "piggy_bank")
    with pytest.raises(ValidationError) as owner:
        services.open_accounts("martian", [unique("m")], "USD", "cash")
    with pytest.raises(ValidationError) as currency:
        services.open_accounts("ib", [unique("ib")], "XXQ", "cash")

    assert (bucket.value.field, owner.value.field, currency.value.field) == (
        "bucket",
        "owner_type",
        "currency",
    )
    assert LedgerAccount.objects.count() == before


def _posted_in_events(since: datetime) -> list[dict[str, object]]:
    return [
        row
        for event in OutboxEvent.objects.filter(
            type="ledger.transfers_posted", occurred_at__gte=since
        ).order_by("occurred_at", "id")
        for row in TransfersPosted.rows(event.payload)
    ]


@pytest.mark.parametrize("chunk_entries", [2, 5, 10_000])
def test_a_batch_written_in_chunks_posts_and_announces_every_transfer_once(
    wallet, monkeypatch, chunk_entries
):
    """PostgreSQL sends a batch's rows in pipelined chunks; whatever the chunk size, every
    transfer is written once, balances follow, and each appears in exactly one event."""
    monkeypatch.setattr(services, "PIPELINE_CHUNK_ENTRIES", chunk_entries)
    since = clock.now()
    clearing = services.system_account("psp_clearing", "USD", qualifier="sandbox")
    wallets = [wallet() for _ in range(3)]
    units = [
        [
            TransferRequest(
                unique("batch"),
                "deposit",
                "USD",
                (debit(clearing.id, 100 * (n + 1)), credit(wallets[n % 3].id, 100 * (n + 1))),
                metadata={"n": n, "note": "Zahlung für Anna"},
            )
        ]
        for n in range(6)
    ]
    units.insert(
        3,
        [
            withdraw_request := TransferRequest(
                unique("over"),
                "withdrawal",
                "USD",
                (debit(wallets[0].id, 10**9), credit(clearing.id, 10**9)),
            )
        ],
    )

    outcomes = services.post_batch(units)

    assert isinstance(outcomes[3][0], errors.InsufficientFunds)
    posted = [o for (o,) in outcomes if isinstance(o, services.TransferResult)]
    assert len(posted) == 6
    assert [queries.balance(w.id).posted for w in wallets] == [500, 700, 900]
    stored = Transfer.objects.get(idempotency_key=units[6][0].idempotency_key)
    assert stored.metadata == {"n": 5, "note": "Zahlung für Anna"}
    announced = _posted_in_events(since)
    assert sorted(str(r["id"]) for r in announced) == sorted(str(p.transfer_id) for p in posted)
    assert not Transfer.objects.filter(idempotency_key=withdraw_request.idempotency_key).exists()
    last = next(r for r in announced if r["id"] == str(stored.id))
    assert last["metadata"] == {"n": 5, "note": "Zahlung für Anna"} and len(last["legs"]) == 2
    assert queries.replay_ledger().clean


def test_a_very_large_transfer_is_written_by_copy(wallet, monkeypatch):
    """One unit too large for one statement goes by COPY and reads back the same."""
    from brokerdesk.core import bulk

    monkeypatch.setattr(bulk, "ONE_STATEMENT_MAX_ROWS", 0)
    clearing = services.system_account("psp_clearing", "USD", qualifier="sandbox")
    wallets = [wallet() for _ in range(4)]
    request = TransferRequest(
        unique("fan"),
        "commission_run",
        "USD",
        (debit(clearing.id, 1_000), *(credit(w.id, 250) for w in wallets)),
        metadata={"note": "Zahlung für Anna"},
    )

    result = services.post_transfer(request)

    assert [queries.balance(w.id).posted for w in wallets] == [250] * 4
    assert Transfer.objects.get(id=result.transfer_id).metadata == {"note": "Zahlung für Anna"}
    assert queries.replay_ledger().clean


def test_a_key_stored_with_the_earlier_request_hash_still_replays(wallet, monkeypatch):
    """Requests hashed by the json.dumps form (before orjson) replay rather than conflict."""
    a = wallet()
    clearing = services.system_account("psp_clearing", "USD", qualifier="sandbox")
    request = TransferRequest(
        unique("legacy"),
        "deposit",
        "USD",
        (debit(clearing.id, 250), credit(a.id, 250)),
        metadata={"payer": "Łukasz Żółć", "rate": 1.5},
        reason="première",
    )
    with monkeypatch.context() as m:
        m.setattr(services, "_hash_json", services._legacy_hash_json)
        first = services.post_transfer(request)
    assert (
        services._hash_json(request.fingerprint_data())
        != Transfer.objects.get(id=first.transfer_id).request_hash
    )  # the two forms differ for this request (non-ASCII text)

    again = services.post_transfer(request)
    changed = TransferRequest(**{**request.__dict__, "reason": "autre"})

    assert again.replayed and again.transfer_id == first.transfer_id
    with pytest.raises(errors.IdempotencyConflict):
        services.post_transfer(changed)
