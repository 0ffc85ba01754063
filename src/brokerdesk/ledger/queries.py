"""ledger read side: balances, balance as of a time, statements, and the replay check."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from django.db.models import Exists, F, OuterRef, Q, Sum

from brokerdesk.core.errors import NotFound
from brokerdesk.ledger.models import Entry, LedgerAccount, Phase, Side, Transfer


@dataclass(frozen=True)
class Balance:
    """An account's balances in minor units."""

    account_id: UUID
    owner_type: str
    owner_id: str
    currency: str
    bucket: str
    posted: int
    pending_in: int
    pending_out: int
    available: int


def _balance(account: LedgerAccount) -> Balance:
    return Balance(
        account_id=account.id,
        owner_type=account.owner_type,
        owner_id=account.owner_id,
        currency=account.currency,
        bucket=account.bucket,
        posted=account.balance,
        pending_in=account.credits_pending,
        pending_out=account.debits_pending,
        available=account.available,
    )


def get_account(account_id: UUID) -> LedgerAccount:
    """The account, or NotFound."""
    account = LedgerAccount.objects.filter(id=account_id).first()
    if account is None:
        raise NotFound(f"No ledger account {account_id}.", field="account_id")
    return account


def balance(account_id: UUID) -> Balance:
    """Posted, pending and available balance of one account."""
    return _balance(get_account(account_id))


def balances_of(owner_type: str, owner_id: str) -> list[Balance]:
    """Every balance of one owner, by currency then bucket."""
    accounts = LedgerAccount.objects.filter(owner_type=owner_type, owner_id=str(owner_id))
    return [_balance(a) for a in accounts.order_by("currency", "bucket")]


def balance_as_of(account_id: UUID, at: datetime) -> int:
    """The posted balance at time ``at`` (one index lookup: the last entry before it)."""
    last = (
        Entry.objects.filter(account_id=account_id, is_pending=False, created_at__lte=at)
        .order_by("-created_at", "-id")
        .values_list("balance_after", flat=True)
        .first()
    )
    return last or 0


@dataclass(frozen=True)
class StatementLine:
    """One posted movement on a statement."""

    at: datetime
    transfer_id: UUID
    kind: str
    reference: str
    debit: int
    credit: int
    balance: int


@dataclass(frozen=True)
class Statement:
    """Opening balance, movements and closing balance of an account over a period."""

    account_id: UUID
    currency: str
    start: datetime
    end: datetime
    opening: int
    closing: int
    lines: list[StatementLine] = field(default_factory=list)


def statement(account_id: UUID, start: datetime, end: datetime) -> Statement:
    """The account's posted movements in [start, end) with running balances."""
    account = get_account(account_id)
    rows = (
        Entry.objects.filter(
            account_id=account_id, is_pending=False, created_at__gte=start, created_at__lt=end
        )
        .select_related("transfer")
        .order_by("created_at", "id")
    )
    lines = [
        StatementLine(
            at=e.created_at,
            transfer_id=e.transfer_id,
            kind=e.transfer.kind,
            reference=e.transfer.idempotency_key,
            debit=e.amount if e.side == Side.DEBIT else 0,
            credit=e.amount if e.side == Side.CREDIT else 0,
            balance=e.balance_after or 0,
        )
        for e in rows
    ]
    opening = _balance_before(account_id, start)
    closing = lines[-1].balance if lines else opening
    return Statement(account.id, account.currency, start, end, opening, closing, lines)


def _balance_before(account_id: UUID, at: datetime) -> int:
    last = (
        Entry.objects.filter(account_id=account_id, is_pending=False, created_at__lt=at)
        .order_by("-created_at", "-id")
        .values_list("balance_after", flat=True)
        .first()
    )
    return last or 0


# ---------------------------------------------------------------------------- replay


@dataclass(frozen=True)
class Difference:
    """A stored figure that the entries do not reproduce."""

    account_id: str
    field: str
    stored: object
    replayed: object


@dataclass(frozen=True)
class ReplayReport:
    """The outcome of rebuilding every balance from the entries."""

    accounts: int
    entries: int
    transfers: int
    differences: list[Difference]
    unbalanced_transfers: list[str]

    @property
    def clean(self) -> bool:
        """True when every balance, chain and transfer checks out."""
        return not self.differences and not self.unbalanced_transfers


def replay_ledger(*, verify_hashes: bool = True) -> ReplayReport:
    """Rebuild every balance from the entries and compare with the stored counters.

    Posted counters are the sums of posted entries; pending counters are the sums of the
    entries of pending transfers that nothing has resolved yet. Each transfer must balance,
    and with ``verify_hashes`` each account's hash chain and running balance are recomputed.
    """
    posted = _sums(Entry.objects.filter(is_pending=False))
    unresolved = Entry.objects.filter(is_pending=True).filter(
        ~Exists(Transfer.objects.filter(pending_id=OuterRef("transfer_id")))
    )
    pending = _sums(unresolved)
    differences: list[Difference] = []
    accounts = 0
    for account in LedgerAccount.objects.order_by("id").iterator(chunk_size=2000):
        accounts += 1
        replayed = {
            "debits_posted": posted[(account.id, Side.DEBIT)],
            "credits_posted": posted[(account.id, Side.CREDIT)],
            "debits_pending": pending[(account.id, Side.DEBIT)],
            "credits_pending": pending[(account.id, Side.CREDIT)],
        }
        for name, value in replayed.items():
            stored = getattr(account, name)
            if stored != value:
                differences.append(Difference(str(account.id), name, stored, value))
    if verify_hashes:
        differences.extend(_verify_chains())
    return ReplayReport(
        accounts=accounts,
        entries=Entry.objects.count(),
        transfers=Transfer.objects.count(),
        differences=differences,
        unbalanced_transfers=_unbalanced_transfers(),
    )


def _sums(entries: object) -> defaultdict[tuple[UUID, str], int]:
    totals: defaultdict[tuple[UUID, str], int] = defaultdict(int)
    rows = entries.values("account_id", "side").annotate(total=Sum("amount"))  # type: ignore[attr-defined]
    for row in rows:
        totals[(row["account_id"], row["side"])] = int(row["total"] or 0)
    return totals


def _unbalanced_transfers() -> list[str]:
    rows = (
        Entry.objects.values("transfer_id")
        .annotate(
            debits=Sum("amount", filter=Q(side=Side.DEBIT)),
            credits=Sum("amount", filter=Q(side=Side.CREDIT)),
        )
        .exclude(debits=F("credits"))
    )
    return [str(r["transfer_id"]) for r in rows]


def _verify_chains() -> list[Difference]:
    """Recompute each account's running balance and hash chain in entry order."""
    from brokerdesk.ledger.services import _entry_hash

    problems: list[Difference] = []
    state: dict[UUID, tuple[int, str]] = {}
    last_hash: dict[UUID, str] = dict(LedgerAccount.objects.values_list("id", "last_hash"))
    for entry in Entry.objects.order_by("account_id", "id").iterator(chunk_size=5000):
        balance, prev = state.get(entry.account_id, (0, "0" * 64))
        if not entry.is_pending:
            balance += entry.amount if entry.side == Side.CREDIT else -entry.amount
            if entry.balance_after != balance:
                problems.append(
                    Difference(
                        str(entry.account_id),
                        f"entry {entry.id} balance_after",
                        entry.balance_after,
                        balance,
                    )
                )
        if _entry_hash(prev, entry) != entry.hash:
            problems.append(
                Difference(
                    str(entry.account_id),
                    f"entry {entry.id} hash",
                    entry.hash,
                    _entry_hash(prev, entry),
                )
            )
        state[entry.account_id] = (balance, entry.hash)
    for account_id, (_, chain_head) in state.items():
        if last_hash.get(account_id) != chain_head:
            problems.append(
                Difference(str(account_id), "last_hash", last_hash.get(account_id), chain_head)
            )
    return problems


def open_pending(account_id: UUID) -> list[Transfer]:
    """Pending transfers on an account that are still unresolved."""
    return list(
        Transfer.objects.filter(
            phase=Phase.PENDING, entries__account_id=account_id, resolution__isnull=True
        )
        .distinct()
        .order_by("created_at")
    )
