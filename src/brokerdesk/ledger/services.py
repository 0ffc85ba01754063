"""ledger commands: the only code that writes ledger tables.

Every command is idempotent (its ``idempotency_key`` is unique; the same key with the same
request returns the first result with ``replayed=True``, with another request it raises
``IdempotencyConflict``), atomic (all of it or none of it, linked chains included) and
recorded (actor and reason on the transfer; operator corrections in the audit log too).

All writes go through one batch engine, ``post_batch``: it validates each request, locks the
accounts of the whole batch in primary-key order (``SELECT … FOR UPDATE``; SQLite serialises
writers), checks idempotency keys after locking, applies the deltas in memory with the flag
checks, then inserts transfers, entries and outbox events and updates balances in one
transaction. A single command is a batch of one; group commit (``grouping.GroupCommitter``)
feeds it many.
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_DOWN, Decimal
from typing import Any, Literal
from uuid import UUID

import orjson
import psycopg
from django.db import IntegrityError, connection, transaction

from brokerdesk.core import audit, bulk, clock
from brokerdesk.core.errors import DomainError, ValidationError
from brokerdesk.core.events import outbox_row
from brokerdesk.core.ids import new_id
from brokerdesk.core.metrics import IDEMPOTENT_REPLAYS
from brokerdesk.core.models import OutboxEvent
from brokerdesk.core.money import MAX_MINOR_UNITS, CurrencySpec, get_currency
from brokerdesk.ledger import errors
from brokerdesk.ledger.events import TransfersPosted
from brokerdesk.ledger.models import (
    Bucket,
    Entry,
    LedgerAccount,
    OwnerType,
    Phase,
    Side,
    Transfer,
)

SideCode = Literal["D", "C"]
ResolveAction = Literal["post", "void", "expire"]
_RESOLVE_PHASE = {
    "post": Phase.POST_PENDING,
    "void": Phase.VOID_PENDING,
    "expire": Phase.EXPIRE_PENDING,
}
_CLIENT_BUCKETS_NO_NEGATIVE = {Bucket.CASH, Bucket.BONUS, Bucket.LOCKED, Bucket.PENDING}


# ---------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class Leg:
    """One side of a transfer on one account."""

    account_id: UUID
    side: SideCode
    amount: int


def debit(account_id: UUID, amount: int) -> Leg:
    """A debit leg."""
    return Leg(account_id, "D", amount)


def credit(account_id: UUID, amount: int) -> Leg:
    """A credit leg."""
    return Leg(account_id, "C", amount)


@dataclass(frozen=True)
class TransferRequest:
    """Move money between accounts of one currency; ``pending`` reserves instead of posting."""

    idempotency_key: str
    kind: str
    currency: str
    legs: tuple[Leg, ...]
    pending: bool = False
    timeout: timedelta | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    actor: str = "system"
    reason: str = ""
    reverses: UUID | None = None
    # the new transfer's id, when the caller must know it before posting (None: a new one);
    # not part of the request's identity: a replay returns the first transfer's id
    transfer_id: UUID | None = None

    def fingerprint_data(self) -> dict[str, Any]:
        """Everything that makes this request what it is (not who sent it)."""
        return {
            "kind": self.kind,
            "currency": self.currency,
            "legs": [[str(leg.account_id), leg.side, leg.amount] for leg in self.legs],
            "pending": self.pending,
            "timeout": self.timeout.total_seconds() if self.timeout else None,
            "metadata": dict(self.metadata),
            "reason": self.reason,
            "reverses": str(self.reverses) if self.reverses else None,
        }

    def fingerprint(self) -> str:
        """A hash of ``fingerprint_data``, built without its ``str()`` of every id: orjson
        writes a ``UUID`` as the same text (on the hot path; the tests compare the two)."""
        metadata, reverses = self.metadata, self.reverses
        return _hash_json(
            {
                "kind": self.kind,
                "currency": self.currency,
                "legs": [
                    [a if a.__class__ is UUID else str(a), leg.side, leg.amount]
                    for leg in self.legs
                    for a in (leg.account_id,)
                ],
                "pending": self.pending,
                "timeout": self.timeout.total_seconds() if self.timeout else None,
                "metadata": metadata if metadata.__class__ is dict else dict(metadata),
                "reason": self.reason,
                "reverses": (
                    (reverses if reverses.__class__ is UUID else str(reverses))
                    if reverses
                    else None
                ),
            }
        )


@dataclass(frozen=True)
class ResolveRequest:
    """Post (possibly a smaller amount), void or expire a pending transfer."""

    idempotency_key: str
    pending_id: UUID
    action: ResolveAction
    amount: int | None = None
    actor: str = "system"
    reason: str = ""

    def fingerprint_data(self) -> dict[str, Any]:
        """The resolution asked for."""
        return {"pending": str(self.pending_id), "action": self.action, "amount": self.amount}

    def fingerprint(self) -> str:
        """A hash of ``fingerprint_data``."""
        return _hash_json(self.fingerprint_data())


Request = TransferRequest | ResolveRequest
Unit = Sequence[Request]  # one request, or a linked chain that succeeds or fails as one


@dataclass(frozen=True)
class TransferResult:
    """What a posted (or replayed) transfer came to."""

    transfer_id: UUID
    idempotency_key: str
    kind: str
    phase: str
    currency: str
    amount: int
    created_at: datetime
    replayed: bool = False
    linked_id: UUID | None = None


Outcome = TransferResult | DomainError


def _hash_json(data: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``data`` (sorted keys, no spaces).

    orjson writes the same text as ``json.dumps(sort_keys=True, separators=(",", ":"))`` for
    ASCII text, integers and the types ``str()`` renders; hashes stored by the earlier
    ``json.dumps`` form still match through ``_legacy_hash_json`` (see ``_Batch._replay``).
    """
    try:
        text = orjson.dumps(data, default=str, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return _legacy_hash_json(data)
    return hashlib.sha256(text).hexdigest()


def _legacy_hash_json(data: dict[str, Any]) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------------------- accounts


def open_account(
    owner_type: str,
    owner_id: str,
    currency: str,
    bucket: str = Bucket.CASH,
    *,
    no_negative: bool | None = None,
    no_positive: bool = False,
    name: str = "",
) -> LedgerAccount:
    """Return the account for (owner, currency, bucket), creating it the first time.

    Client, IB and trading-account buckets default to may-not-go-negative.
    """
    spec = _checked_account_kind(owner_type, currency, bucket)
    if no_negative is None:
        no_negative = owner_type != OwnerType.SYSTEM and bucket in _CLIENT_BUCKETS_NO_NEGATIVE
    if no_negative and no_positive:
        raise ValidationError(
            "An account cannot be both may-not-go-negative and may-not-go-positive.",
            field="no_positive",
        )
    lookup = {
        "owner_type": owner_type,
        "owner_id": str(owner_id),
        "currency": spec.code,
        "bucket": bucket,
    }
    existing = LedgerAccount.objects.filter(**lookup).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            return LedgerAccount.objects.create(
                **lookup,
                no_negative=no_negative,
                no_positive=no_positive,
                name=name or f"{owner_type}:{owner_id} {spec.code} {bucket}",
                created_at=clock.now(),
            )
    except IntegrityError:  # created meanwhile by another transaction
        return LedgerAccount.objects.get(**lookup)


def _checked_account_kind(owner_type: str, currency: str, bucket: str) -> CurrencySpec:
    """The currency of an account to open, once owner type and bucket are known ones."""
    spec = get_currency(currency)
    if owner_type not in OwnerType.values:
        raise ValidationError(f"Unknown owner type {owner_type!r}.", field="owner_type")
    if bucket not in Bucket.values:
        raise ValidationError(f"Unknown bucket {bucket!r}.", field="bucket")
    return spec


def open_accounts(
    owner_type: str, owner_ids: Iterable[str], currency: str, bucket: str = Bucket.CASH
) -> dict[str, UUID]:
    """The account ids of many owners' (currency, bucket) accounts, creating the missing ones
    in one statement — what ``open_account`` does for one owner, for a batch (commissions
    open thousands of IB accounts at a time). Default flags as ``open_account``'s."""
    wanted = {str(o) for o in owner_ids}
    if not wanted:
        return {}
    spec = _checked_account_kind(owner_type, currency, bucket)
    lookup = {"owner_type": owner_type, "currency": spec.code, "bucket": bucket}
    found = _account_ids(lookup, wanted)
    missing = sorted(wanted - found.keys())
    if missing:
        no_negative = owner_type != OwnerType.SYSTEM and bucket in _CLIENT_BUCKETS_NO_NEGATIVE
        now = clock.now()
        LedgerAccount.objects.bulk_create(
            [
                LedgerAccount(
                    **lookup,
                    owner_id=owner,
                    no_negative=no_negative,
                    name=f"{owner_type}:{owner} {spec.code} {bucket}",
                    created_at=now,
                )
                for owner in missing
            ],
            batch_size=2000,
            ignore_conflicts=True,  # created meanwhile by another transaction
        )
        found.update(_account_ids(lookup, set(missing)))
    return found


def _account_ids(lookup: dict[str, str], owners: set[str]) -> dict[str, UUID]:
    rows = LedgerAccount.objects.filter(**lookup, owner_id__in=owners).values_list("owner_id", "id")
    return dict(rows)


SYSTEM_PURPOSES = {
    "psp_clearing": Bucket.CLEARING,
    "platform_clearing": Bucket.CLEARING,
    "bank": Bucket.CLEARING,
    "fee_income": Bucket.INCOME,
    "fx": Bucket.FX,
    "bonus_expense": Bucket.EXPENSE,
    "ib_commission_expense": Bucket.EXPENSE,
    "psp_fee_expense": Bucket.EXPENSE,
    "suspense": Bucket.SUSPENSE,
}


def system_account(purpose: str, currency: str, *, qualifier: str = "") -> LedgerAccount:
    """A system account such as ``psp_clearing`` (qualified by PSP), ``fee_income`` or ``fx``."""
    if purpose not in SYSTEM_PURPOSES:
        raise ValidationError(
            f"Unknown system account purpose {purpose!r}; one of {sorted(SYSTEM_PURPOSES)}.",
            field="purpose",
        )
    owner_id = f"{purpose}:{qualifier}" if qualifier else purpose
    return open_account(OwnerType.SYSTEM, owner_id, currency, SYSTEM_PURPOSES[purpose])


def wallet_account(
    client_id: str | UUID, currency: str, bucket: str = Bucket.CASH
) -> LedgerAccount:
    """A client's wallet bucket in one currency (may not go negative)."""
    return open_account(OwnerType.CLIENT, str(client_id), currency, bucket)


# ---------------------------------------------------------------------------- commands


def transfer(
    idempotency_key: str,
    *,
    debit_account: UUID,
    credit_account: UUID,
    amount: int,
    currency: str,
    kind: str,
    pending: bool = False,
    timeout: timedelta | None = None,
    metadata: Mapping[str, Any] | None = None,
    actor: str = "system",
    reason: str = "",
) -> TransferResult:
    """Move ``amount`` from one account to another (posted, or pending when asked)."""
    return post_transfer(
        TransferRequest(
            idempotency_key=idempotency_key,
            kind=kind,
            currency=currency,
            legs=(debit(debit_account, amount), credit(credit_account, amount)),
            pending=pending,
            timeout=timeout,
            metadata=metadata or {},
            actor=actor,
            reason=reason,
        )
    )


def post_transfer(request: Request) -> TransferResult:
    """Execute one request; raise its domain error if it fails."""
    return post_linked([request])[0]


def post_linked(requests: Sequence[Request]) -> list[TransferResult]:
    """Execute requests as one linked chain: all succeed or none is written."""
    outcomes = post_batch([requests])[0]
    failure = _first_failure(outcomes)
    if failure is not None:
        raise failure
    return [o for o in outcomes if isinstance(o, TransferResult)]


def post_pending(
    pending_id: UUID,
    idempotency_key: str,
    *,
    amount: int | None = None,
    actor: str = "system",
    reason: str = "",
) -> TransferResult:
    """Post a pending transfer, in full or (two legs only) for a smaller amount."""
    return post_transfer(
        ResolveRequest(idempotency_key, pending_id, "post", amount, actor=actor, reason=reason)
    )


def void_pending(
    pending_id: UUID, idempotency_key: str, *, actor: str = "system", reason: str = ""
) -> TransferResult:
    """Void a pending transfer: its reserved amounts are released."""
    return post_transfer(
        ResolveRequest(idempotency_key, pending_id, "void", actor=actor, reason=reason)
    )


def expire_pending_transfers(*, limit: int = 1000) -> int:
    """Expire pending transfers whose timeout has passed; return how many were expired."""
    due = list(
        Transfer.objects.filter(
            phase=Phase.PENDING, expires_at__lte=clock.now(), resolution__isnull=True
        )
        .order_by("expires_at")
        .values_list("id", flat=True)[:limit]
    )
    units = [[ResolveRequest(f"expire:{pid}", pid, "expire", reason="timeout")] for pid in due]
    outcomes = post_batch(units) if units else []
    return sum(1 for (o,) in outcomes if isinstance(o, TransferResult) and not o.replayed)


def place_hold(
    idempotency_key: str,
    *,
    account: LedgerAccount,
    amount: int,
    reason: str,
    timeout: timedelta | None = None,
    actor: str = "system",
) -> TransferResult:
    """Hold funds: a pending transfer into the owner's locked bucket; void to release."""
    locked = open_account(account.owner_type, account.owner_id, account.currency, Bucket.LOCKED)
    return transfer(
        idempotency_key,
        debit_account=account.id,
        credit_account=locked.id,
        amount=amount,
        currency=account.currency,
        kind="hold",
        pending=True,
        timeout=timeout,
        actor=actor,
        reason=reason,
    )


def reverse(
    transfer_id: UUID, idempotency_key: str, *, reason: str, actor: str = "system"
) -> TransferResult:
    """Post a compensating transfer that mirrors a posted one and links to it."""
    if not reason.strip():
        raise ValidationError("A reversal needs a reason.", code="reason_required", field="reason")
    original = Transfer.objects.filter(id=transfer_id).first()
    if original is None:
        raise errors.PendingNotFound(
            f"No transfer {transfer_id}.", code="transfer_not_found", field="transfer_id"
        )
    if original.phase not in (Phase.POSTED, Phase.POST_PENDING):
        raise ValidationError(
            f"Only posted transfers can be reversed; this one is {original.phase}.",
            code="not_reversible",
            field="transfer_id",
        )
    legs = tuple(
        Leg(e.account_id, "C" if e.side == Side.DEBIT else "D", e.amount)
        for e in original.entries.order_by("id")
    )
    request = TransferRequest(
        idempotency_key=idempotency_key,
        kind=f"reversal:{original.kind}",
        currency=original.currency,
        legs=legs,
        metadata={"reverses": str(original.id)},
        actor=actor,
        reason=reason,
        reverses=original.id,
    )
    with transaction.atomic():
        result = post_transfer(request)
        if not result.replayed:
            audit.record(
                actor=actor,
                action="ledger.reverse",
                object_type="transfer",
                object_id=str(original.id),
                reason=reason,
                after={"reversal_id": str(result.transfer_id), "amount": original.amount},
            )
    return result


@dataclass(frozen=True)
class Conversion:
    """The three linked transfers of an FX conversion and the figures behind them."""

    sold: TransferResult
    bought: TransferResult
    fee: TransferResult | None
    rate: Decimal
    sell_amount: int
    gross_buy_amount: int
    fee_amount: int
    net_buy_amount: int


def convert(
    idempotency_key: str,
    *,
    from_account: LedgerAccount,
    to_account: LedgerAccount,
    sell_amount: int,
    rate: Decimal | str,
    fee_bps: int = 0,
    actor: str = "system",
    reason: str = "",
) -> Conversion:
    """Convert between currencies through the FX accounts, with rate and fee explicit.

    ``rate`` is units of the target currency per unit of the source. The bought amount is
    rounded down and the fee (in the target currency) rounded up, both in the house's favour.
    """
    rate = _parse_rate(rate)
    _check_amount(sell_amount, "sell_amount")
    if from_account.currency == to_account.currency:
        raise ValidationError(
            "A conversion needs two different currencies.", code="same_currency", field="to"
        )
    if not 0 <= fee_bps < 10_000:
        raise ValidationError("fee_bps must be between 0 and 9999.", field="fee_bps")
    src, dst = get_currency(from_account.currency), get_currency(to_account.currency)
    gross = int(
        (Decimal(sell_amount) * rate).scaleb(dst.scale - src.scale).to_integral_value(ROUND_DOWN)
    )
    fee = int((Decimal(gross) * fee_bps / 10_000).to_integral_value(ROUND_CEILING))
    if gross - fee <= 0:
        raise errors.InvalidAmount(
            "The amount is too small to convert at this rate.", field="sell_amount"
        )
    fx_src = system_account("fx", src.code)
    fx_dst = system_account("fx", dst.code)
    meta = {"rate": str(rate), "fee_bps": fee_bps, "pair": f"{src.code}/{dst.code}"}
    chain: list[Request] = [
        TransferRequest(
            f"{idempotency_key}:sell",
            "fx_sell",
            src.code,
            (debit(from_account.id, sell_amount), credit(fx_src.id, sell_amount)),
            metadata=meta,
            actor=actor,
            reason=reason,
        ),
        TransferRequest(
            f"{idempotency_key}:buy",
            "fx_buy",
            dst.code,
            (debit(fx_dst.id, gross), credit(to_account.id, gross)),
            metadata=meta,
            actor=actor,
            reason=reason,
        ),
    ]
    if fee:
        income = system_account("fee_income", dst.code)
        chain.append(
            TransferRequest(
                f"{idempotency_key}:fee",
                "fx_fee",
                dst.code,
                (debit(to_account.id, fee), credit(income.id, fee)),
                metadata=meta,
                actor=actor,
                reason=reason,
            )
        )
    results = post_linked(chain)
    return Conversion(
        sold=results[0],
        bought=results[1],
        fee=results[2] if fee else None,
        rate=rate,
        sell_amount=sell_amount,
        gross_buy_amount=gross,
        fee_amount=fee,
        net_buy_amount=gross - fee,
    )


def _parse_rate(rate: Decimal | str) -> Decimal:
    try:
        value = Decimal(str(rate))
    except ArithmeticError:
        raise ValidationError(f"Rate {rate!r} is not a number.", field="rate") from None
    if not value.is_finite() or value <= 0:
        raise ValidationError("The rate must be a positive number.", field="rate")
    return value


def _first_failure(outcomes: Iterable[Outcome]) -> DomainError | None:
    failures = [o for o in outcomes if isinstance(o, DomainError)]
    primary = [f for f in failures if not isinstance(f, errors.LinkedTransferFailed)]
    chosen = primary or failures
    return chosen[0] if chosen else None


# ---------------------------------------------------------------------------- the engine


def post_batch(units: Sequence[Unit]) -> list[list[Outcome]]:
    """Execute many units in one transaction; each gets its own results or errors.

    A unit is one request or a linked chain. Failures are returned, not raised, so one bad
    request does not hold up the others (group commit relies on this).
    """
    for attempt in range(3):
        try:
            with transaction.atomic():
                return _Batch(units).run()
        except (IntegrityError, psycopg.IntegrityError):
            # A concurrent transaction took one of our idempotency keys (or resolved a pending
            # transfer) between our check and our insert; the retry sees it and replays.
            # (psycopg's own error: the hot path writes through psycopg cursors directly.)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _check_amount(amount: object, field_name: str) -> None:
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise errors.InvalidAmount(
            "Amounts are whole numbers of minor units.", code="not_integer", field=field_name
        )
    if amount <= 0:
        raise errors.InvalidAmount(f"The amount must be positive; got {amount}.", field=field_name)
    if amount > MAX_MINOR_UNITS:
        raise errors.InvalidAmount("The amount is too large.", field=field_name)


def _validate_transfer(request: TransferRequest) -> None:
    if not request.idempotency_key or len(request.idempotency_key) > 200:
        raise ValidationError(
            "An idempotency key of 1 to 200 characters is required.", field="idempotency_key"
        )
    if not request.kind:
        raise ValidationError("A transfer needs a kind.", field="kind")
    get_currency(request.currency)
    legs = request.legs
    if len(legs) < 2:
        raise errors.Unbalanced("A transfer needs at least two legs.", field="legs")
    debits = credits = 0
    for index, leg in enumerate(legs):
        amount = leg.amount
        if amount.__class__ is not int or not 0 < amount <= MAX_MINOR_UNITS:
            _check_amount(amount, f"legs[{index}].amount")  # says what is wrong, if anything
        if leg.side == "D":
            debits += amount
        elif leg.side == "C":
            credits += amount
        else:
            raise ValidationError(f"Side must be D or C; got {leg.side!r}.", field="side")
    if _debits_and_credits_one_account(legs):
        raise ValidationError(
            "An account cannot be debited and credited in the same transfer.",
            code="same_account",
            field="legs",
        )
    if debits != credits:
        raise errors.Unbalanced(
            f"Debits ({debits}) and credits ({credits}) differ by {abs(debits - credits)}.",
            field="legs",
        )
    if request.timeout is not None and (
        not request.pending or request.timeout.total_seconds() <= 0
    ):
        raise ValidationError(
            "A timeout applies only to a pending transfer and must be positive.",
            field="timeout",
        )


def _debits_and_credits_one_account(legs: Sequence[Leg]) -> bool:
    """Whether one account is both debited and credited."""
    if len(legs) == 2:  # the usual transfer: no sets to build
        first, second = legs
        return first.side != second.side and first.account_id == second.account_id
    debited = {leg.account_id for leg in legs if leg.side == "D"}
    return bool(debited & {leg.account_id for leg in legs if leg.side == "C"})


def _validate(request: Request) -> None:
    if isinstance(request, TransferRequest):
        _validate_transfer(request)
        return
    if not request.idempotency_key:
        raise ValidationError("An idempotency key is required.", field="idempotency_key")
    if request.action not in _RESOLVE_PHASE:
        raise ValidationError(f"Unknown action {request.action!r}.", field="action")
    if request.amount is not None:
        if request.action != "post":
            raise ValidationError("Only a post takes an amount.", field="amount")
        _check_amount(request.amount, "amount")


def _chain_link(
    prev: str,
    transfer_id: object,
    side: str,
    amount: int,
    is_pending: bool,
    balance_after: int | None,
    created_iso: str,
) -> str:
    """SHA-256 of an entry's fields after the previous link of its account's chain."""
    text = f"{prev}|{transfer_id}|{side}|{amount}|{int(is_pending)}|{balance_after}|{created_iso}"
    return hashlib.sha256(text.encode()).hexdigest()


def _entry_hash(prev: str, entry: Entry | _NewEntry, created_iso: str | None = None) -> str:
    """The entry's link in its account's hash chain (``created_iso``: its time, preformatted)."""
    return _chain_link(
        prev,
        entry.transfer_id,
        entry.side,
        entry.amount,
        entry.is_pending,
        entry.balance_after,
        created_iso or entry.created_at.isoformat(),
    )


@dataclass(slots=True)
class _NewTransfer:
    """A transfer row about to be written (a plain object: models are slow to build)."""

    id: UUID
    idempotency_key: str
    request_hash: str
    kind: str
    currency: str
    amount: int
    phase: str
    created_at: datetime
    linked_id: UUID | None = None
    pending_id: UUID | None = None
    reverses_id: UUID | None = None
    expires_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    actor: str = "system"
    reason: str = ""
    id_text: str = ""  # ``str(id)``, when the engine has it (not a column)


@dataclass(slots=True)
class _NewEntry:
    """An entry row about to be written."""

    transfer_id: UUID
    account_id: UUID
    side: str
    amount: int
    is_pending: bool
    balance_after: int | None
    created_at: datetime
    hash: str = ""


@dataclass(slots=True)
class _AccountState:
    """A locked account as the engine needs it (PostgreSQL path; SQLite uses the model)."""

    id: UUID
    name: str
    currency: str
    no_negative: bool
    no_positive: bool
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    entry_count: int
    last_hash: str

    @property
    def pk(self) -> UUID:
        """The primary key (for the bulk update)."""
        return self.id

    @property
    def balance(self) -> int:
        """Posted balance: credits minus debits."""
        return self.credits_posted - self.debits_posted


# Locks taken one index probe at a time, in the order of the (sorted) ids given: concurrent
# batches lock in primary-key order and cannot deadlock, and no plan scans the whole table.
_PG_LOCK_ACCOUNTS = (
    "SELECT a.* FROM unnest(%b::uuid[]) AS k(id) CROSS JOIN LATERAL "
    "(SELECT id, name, currency, no_negative, no_positive, debits_posted, credits_posted, "
    "debits_pending, credits_pending, entry_count, last_hash FROM ledger_ledgeraccount "
    "WHERE id = k.id LIMIT 1 FOR UPDATE) AS a"
)
# One index probe per key (LATERAL … LIMIT 1 keeps the planner from a hash join over the whole
# table, which a prepared statement's generic plan would otherwise pick as the table grows).
_PG_EXISTING_KEYS = (
    "SELECT t.id, t.idempotency_key, t.request_hash, t.kind, t.currency, t.amount, t.phase, "
    "t.created_at, t.linked_id FROM unnest(%b::varchar[]) AS k(key) CROSS JOIN LATERAL "
    "(SELECT * FROM ledger_transfer WHERE idempotency_key = k.key LIMIT 1) AS t"
)

# A batch's rows go to PostgreSQL in chunks of about this many entries (pipelined)…
PIPELINE_CHUNK_ENTRIES = 600
# … the first one smaller (see ``_chunk_limit``).
PIPELINE_FIRST_CHUNK_ENTRIES = 100


def _chunk_limit(sent: int) -> int:
    """How many entries the next chunk of a pipelined batch holds once ``sent`` were sent:
    the server waits for the first chunk, so it is small, and the next ones double up to
    ``PIPELINE_CHUNK_ENTRIES`` (each statement costs the server about 0.2 ms of its own)."""
    return min(PIPELINE_CHUNK_ENTRIES, max(PIPELINE_FIRST_CHUNK_ENTRIES, 2 * sent))


_COUNTERS = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")
_SNAPSHOT_FIELDS = (*_COUNTERS, "entry_count", "last_hash")
_snapshot_of = operator.attrgetter(*_SNAPSHOT_FIELDS)
_uuid_int = operator.attrgetter("int")  # sort ids by their number: C comparisons, same order
_account_order = operator.attrgetter("id.int")


class _Batch:
    """One pass of the engine over a list of units, inside the caller's transaction."""

    def __init__(self, units: Sequence[Unit]) -> None:
        self.units = [list(unit) for unit in units]
        self.outcomes: list[list[Outcome | None]] = [[None] * len(u) for u in self.units]
        self.now = clock.now()
        self.now_iso = self.now.isoformat()
        self.accounts: dict[UUID, LedgerAccount] = {}
        self.pendings: dict[UUID, Transfer] = {}
        self.pending_entries: dict[UUID, list[Entry]] = {}
        self.resolved: dict[UUID, str] = {}
        self.reversed: set[UUID] = set()
        self.existing: dict[str, Transfer | _NewTransfer] = {}
        self.existing_loaded = False
        self.fingerprints: dict[int, str] = {}
        self.new_ids: dict[int, tuple[UUID, str]] = {}  # a new transfer's id and its text
        self.new_transfers: list[_NewTransfer] = []
        self.new_entries: list[_NewEntry] = []
        self.done_in_batch: dict[str, tuple[str, TransferResult]] = {}
        self.touched: dict[int, LedgerAccount] = {}  # by id(): no UUID hashing per entry
        self.saved: dict[int, tuple[LedgerAccount, tuple[Any, ...]]] = {}
        self.linked_id: UUID | None = None
        self.unit_keys: list[tuple[str, UUID | None, UUID | None]] = []

    # -- phases

    def run(self) -> list[list[Outcome]]:
        if connection.vendor == "postgresql" and not self._has_resolutions():
            live = self._lock_while_validating()
        else:
            live = [i for i in range(len(self.units)) if self._validate_unit(i)]
            self._load_pendings(live)
            self._lock_accounts(live)  # on PostgreSQL it hashes requests while the server locks
        if not self.fingerprints:
            self._prepare_requests(live)
        self.now = clock.now()  # after the locks, so entry times follow commit order
        self.now_iso = self.now.isoformat()
        self._load_existing(live)
        if connection.vendor == "postgresql" and len(live) > 1:
            # Pipelined: each chunk's rows are sent as soon as they are computed and the server
            # writes them while the next chunk is computed here (two cores, not one after the
            # other). Errors surface when the pipeline syncs, before the transaction commits.
            with connection.connection.pipeline():
                sent = 0
                for i in live:
                    self._apply_unit(i)
                    if len(self.new_entries) >= _chunk_limit(sent):
                        sent += len(self.new_entries)
                        self._write()
                self._write()
        else:
            for i in live:
                self._apply_unit(i)
            self._write()
        return [[o for o in unit if o is not None] for unit in self.outcomes]

    def _fail_unit(self, i: int, j: int, error: DomainError) -> None:
        for k in range(len(self.units[i])):
            self.outcomes[i][k] = (
                error
                if k == j
                else errors.LinkedTransferFailed(
                    f"Not posted: linked request {j + 1} failed ({error.code}).",
                    field=f"linked[{j}]",
                )
            )

    def _validate_unit(self, i: int) -> bool:
        for j, request in enumerate(self.units[i]):
            try:
                _validate(request)
            except DomainError as exc:
                self._fail_unit(i, j, exc)
                return False
        return True

    def _load_pendings(self, live: list[int]) -> None:
        ids = {r.pending_id for i in live for r in self.units[i] if isinstance(r, ResolveRequest)}
        if not ids:
            return
        self.pendings = {t.id: t for t in Transfer.objects.filter(id__in=ids)}
        for entry in Entry.objects.filter(transfer_id__in=ids).order_by("id"):
            self.pending_entries.setdefault(entry.transfer_id, []).append(entry)

    def _account_ids(self, request: Request) -> list[UUID]:
        if isinstance(request, TransferRequest):
            return [leg.account_id for leg in request.legs]
        return [e.account_id for e in self.pending_entries.get(request.pending_id, [])]

    def _prepare_requests(self, live: list[int]) -> None:
        """What does not depend on the accounts, done while the server takes the locks: each
        request's fingerprint, and each transfer's new id with its text (all ids written as
        text at once, by orjson in C: ``str()`` of a UUID is Python code)."""
        requests = [r for i in live for r in self.units[i]]
        self.fingerprints = {id(r): r.fingerprint() for r in requests}
        transfers = [r for r in requests if isinstance(r, TransferRequest)]
        ids = [r.transfer_id or new_id() for r in transfers]
        texts = orjson.loads(orjson.dumps(ids))
        self.new_ids = {id(r): (i, t) for r, i, t in zip(transfers, ids, texts, strict=True)}

    def _has_resolutions(self) -> bool:
        return any(isinstance(r, ResolveRequest) for unit in self.units for r in unit)

    def _lock_while_validating(self) -> list[int]:
        """PostgreSQL, transfers only (no pending transfer to load first): lock the accounts
        every request names and read every key, and validate and prepare the requests while
        the server does it; return the valid units. (An invalid request's accounts are locked
        and its key read for nothing, which is harmless; ids that are not UUIDs name no
        account.)"""
        requests = [r for unit in self.units for r in unit]
        ids = sorted(
            {
                leg.account_id
                for r in requests
                if isinstance(r, TransferRequest)
                for leg in r.legs
                if leg.account_id.__class__ is UUID
            },
            key=_uuid_int,
        )
        live: list[int] = []

        def validate_and_prepare() -> None:
            live.extend(i for i in range(len(self.units)) if self._validate_unit(i))
            self._prepare_requests(live)

        if not ids:
            validate_and_prepare()
            return live
        keys = sorted({r.idempotency_key for r in requests if r.idempotency_key.__class__ is str})
        self._pg_lock(ids, keys, validate_and_prepare)
        return live

    def _lock_accounts(self, live: list[int]) -> None:
        ids = sorted(
            {
                a
                for i in live
                for r in self.units[i]
                for a in self._account_ids(r)
                if a.__class__ is UUID  # anything else names no account (AccountNotFound)
            },
            key=_uuid_int,
        )
        if not ids:
            return
        if connection.vendor == "postgresql":
            keys = sorted({r.idempotency_key for i in live for r in self.units[i]})
            self._pg_lock(ids, keys, lambda: self._prepare_requests(live))
            return
        locked = LedgerAccount.objects.select_for_update().filter(id__in=ids).order_by("id")
        self.accounts = {a.id: a for a in locked}

    def _pg_lock(self, ids: list[UUID], keys: list[str], meanwhile: Callable[[], None]) -> None:
        """Lock the accounts ``ids`` (sorted) and read the transfers of ``keys``, running
        ``meanwhile`` here while the server does it.

        The hot path: plain SQL (the ORM costs ~1 ms more per call than the query), and the
        keys read in the same round trip: the server runs the second statement once the first
        holds its locks, with a fresh snapshot (read committed), so it sees every transfer
        committed by whoever held them before. ``meanwhile`` takes no longer than the server,
        so the locks are not held longer for it.
        """
        with bulk.pg_cursor() as locking, bulk.pg_cursor() as reading:
            with connection.connection.pipeline():
                locking.execute(_PG_LOCK_ACCOUNTS, [ids], prepare=True)
                reading.execute(_PG_EXISTING_KEYS, [keys], prepare=True)
                meanwhile()
            rows = locking.fetchall()
            found = [_NewTransfer(*row) for row in reading.fetchall()]
        self.accounts = {row[0]: _AccountState(*row) for row in rows}  # type: ignore[misc]
        self.existing = {t.idempotency_key: t for t in found}
        self.existing_loaded = True

    def _load_existing(self, live: list[int]) -> None:
        """Read idempotency keys, resolutions and reversals after locking (so we see winners)."""
        requests = [r for i in live for r in self.units[i]]
        keys = sorted({r.idempotency_key for r in requests})
        if self.existing_loaded:
            pass
        elif connection.vendor == "postgresql":
            with bulk.pg_cursor() as cursor:
                cursor.execute(_PG_EXISTING_KEYS, [keys], prepare=True)
                found = [_NewTransfer(*row) for row in cursor.fetchall()]
            self.existing = {t.idempotency_key: t for t in found}
        else:
            self.existing = {
                t.idempotency_key: t for t in Transfer.objects.filter(idempotency_key__in=keys)
            }
        pending_ids = {r.pending_id for r in requests if isinstance(r, ResolveRequest)}
        if pending_ids:
            self.resolved = dict(
                Transfer.objects.filter(pending_id__in=pending_ids).values_list(
                    "pending_id", "phase"
                )
            )
        reversal_of = {
            r.reverses for r in requests if isinstance(r, TransferRequest) and r.reverses
        }
        if reversal_of:
            self.reversed = set(
                Transfer.objects.filter(reverses_id__in=reversal_of).values_list(
                    "reverses_id", flat=True
                )
            )

    # -- applying one unit in memory

    def _apply_unit(self, i: int) -> None:
        """Apply one unit in memory; if one of its requests fails, undo all of it."""
        unit, outcomes = self.units[i], self.outcomes[i]
        marks = (len(self.new_transfers), len(self.new_entries))
        self.linked_id = new_id() if len(unit) > 1 else None
        self.saved = {}
        self.unit_keys = []
        for j, request in enumerate(unit):
            try:
                outcomes[j] = self._apply(request)
            except DomainError as exc:
                self._undo_unit(marks)
                self._fail_unit(i, j, exc)
                return

    def _remember(self, account: LedgerAccount) -> None:
        """Save the account's counters before the unit first changes them."""
        if id(account) not in self.saved:
            self.saved[id(account)] = (account, _snapshot_of(account))

    def _undo_unit(self, marks: tuple[int, int]) -> None:
        """Put back what the failed unit changed: counters, rows and the keys it took."""
        for account, values in self.saved.values():
            for name, value in zip(_SNAPSHOT_FIELDS, values, strict=True):
                setattr(account, name, value)
        del self.new_transfers[marks[0] :]
        del self.new_entries[marks[1] :]
        for key, resolved, reversed_id in self.unit_keys:
            self.done_in_batch.pop(key, None)
            if resolved is not None:
                self.resolved.pop(resolved, None)
            if reversed_id is not None:
                self.reversed.discard(reversed_id)

    def _replay(self, request: Request, fingerprint: str) -> TransferResult | None:
        key = request.idempotency_key
        if key in self.done_in_batch:
            first_fingerprint, result = self.done_in_batch[key]
            stored_hash = first_fingerprint
            found: TransferResult | None = result
        elif key in self.existing:
            stored = self.existing[key]
            stored_hash, found = stored.request_hash, _result(stored)
        else:
            return None
        if stored_hash != fingerprint and stored_hash != _legacy_hash_json(
            request.fingerprint_data()
        ):
            raise errors.IdempotencyConflict(
                f"Idempotency key {key!r} was used for a different request.",
                field="idempotency_key",
            )
        IDEMPOTENT_REPLAYS.labels(kind="ledger_transfer").inc()
        assert found is not None
        return TransferResult(**{**found.__dict__, "replayed": True})

    def _apply(self, request: Request) -> TransferResult:
        fingerprint = self.fingerprints.get(id(request)) or request.fingerprint()
        key = request.idempotency_key
        if key in self.done_in_batch or key in self.existing:
            replay = self._replay(request, fingerprint)
            if replay is not None:
                return replay
        if isinstance(request, TransferRequest):
            result = self._apply_transfer(request, fingerprint)
        else:
            result = self._apply_resolution(request, fingerprint)
        self.done_in_batch[request.idempotency_key] = (fingerprint, result)
        return result

    def _account(self, account_id: UUID, currency: str) -> LedgerAccount:
        account = self.accounts.get(account_id)
        if account is None:
            raise errors.AccountNotFound(f"No ledger account {account_id}.", field="account_id")
        if account.currency != currency:
            raise errors.MixedCurrencies(
                f"Account {account.name} is in {account.currency}, the transfer in {currency}; "
                "convert through FX instead.",
                field="currency",
            )
        return account

    def _apply_transfer(self, request: TransferRequest, fingerprint: str) -> TransferResult:
        currency = get_currency(request.currency).code
        if request.reverses is not None:
            if request.reverses in self.reversed:
                raise errors.AlreadyReversed(
                    f"Transfer {request.reverses} has already been reversed.",
                    field="transfer_id",
                )
            self.reversed.add(request.reverses)
        self.unit_keys.append((request.idempotency_key, None, request.reverses))
        legs, pending = request.legs, request.pending
        amount = 0
        for leg in legs:
            if leg.side == "D":
                amount += leg.amount
        transfer_id, record_text = self.new_ids.get(id(request)) or _id_and_text(request)
        record = self._new_transfer(
            transfer_id,
            request.idempotency_key,
            fingerprint,
            request.kind,
            currency,
            amount,
            Phase.PENDING if pending else Phase.POSTED,
            metadata=dict(request.metadata),
            actor=request.actor,
            reason=request.reason,
            reverses_id=request.reverses,
            expires_at=self.now + request.timeout if request.timeout else None,
        )
        record.id_text = record_text
        accounts, moved = self.accounts, []
        for leg in legs:
            account = accounts.get(leg.account_id)
            if account is None or account.currency != currency:
                account = self._account(leg.account_id, currency)  # raises the error that applies
            self._move(record, account, leg.side, leg.amount, pending, record_text)
            moved.append(account)
        self._check_flags(legs, moved)
        return _result(record)

    def _apply_resolution(self, request: ResolveRequest, fingerprint: str) -> TransferResult:
        pending = self.pendings.get(request.pending_id)
        if pending is None or pending.phase != Phase.PENDING:
            raise errors.PendingNotFound(
                f"No pending transfer {request.pending_id}.", field="pending_id"
            )
        if pending.id in self.resolved:
            raise errors.PendingResolved(
                f"Pending transfer {pending.id} was already resolved "
                f"({self.resolved[pending.id]}).",
                field="pending_id",
            )
        expired = pending.expires_at is not None and pending.expires_at <= self.now
        if request.action == "expire" and not expired:
            raise errors.PendingResolved("The pending transfer has not expired yet.")
        if request.action != "expire" and expired:
            raise errors.PendingExpired(
                f"Pending transfer {pending.id} expired at {pending.expires_at:%Y-%m-%d %H:%M:%S}.",
                field="pending_id",
            )
        entries = self.pending_entries.get(pending.id, [])
        amount = request.amount if request.amount is not None else pending.amount
        if amount > pending.amount:
            raise errors.InvalidAmount(
                f"Cannot post {amount}: the pending transfer reserved {pending.amount}.",
                field="amount",
            )
        if amount != pending.amount and len(entries) != 2:
            raise errors.InvalidAmount(
                "A smaller amount can be posted only for a two-leg transfer.", field="amount"
            )
        phase = _RESOLVE_PHASE[request.action]
        self.resolved[pending.id] = phase
        self.unit_keys.append((request.idempotency_key, pending.id, None))
        record = self._new_transfer(
            new_id(),
            request.idempotency_key,
            fingerprint,
            pending.kind,
            pending.currency,
            amount if request.action == "post" else pending.amount,
            phase,
            metadata={**pending.metadata, "pending_id": str(pending.id)},
            actor=request.actor,
            reason=request.reason,
            pending_id=pending.id,
        )
        moved = []
        for e in entries:
            account = self.accounts[e.account_id]
            self._remember(account)
            counter = "debits_pending" if e.side == Side.DEBIT else "credits_pending"
            setattr(account, counter, getattr(account, counter) - e.amount)
            self.touched[id(account)] = account
            if request.action == "post":
                self._move(record, account, e.side, amount if len(entries) == 2 else e.amount)
            moved.append(account)
        legs = [Leg(e.account_id, "D" if e.side == Side.DEBIT else "C", e.amount) for e in entries]
        self._check_flags(legs, moved)
        return _result(record)

    def _new_transfer(
        self,
        transfer_id: UUID,
        key: str,
        fingerprint: str,
        kind: str,
        currency: str,
        amount: int,
        phase: str,
        **fields: Any,
    ) -> _NewTransfer:
        record = _NewTransfer(
            id=transfer_id,
            idempotency_key=key,
            request_hash=fingerprint,
            kind=kind,
            currency=currency,
            amount=amount,
            phase=str(phase),
            created_at=self.now,
            linked_id=self.linked_id,
            **fields,
        )
        self.new_transfers.append(record)
        return record

    def _move(
        self,
        record: _NewTransfer,
        account: LedgerAccount,
        side: str,
        amount: int,
        pending: bool = False,
        record_text: str | None = None,
    ) -> None:
        """Apply one leg to the account in memory and add its entry (``record_text``: the
        transfer's id as text, when the caller has it already)."""
        if side.__class__ is not str:
            side = str(side)  # a Side choice from a stored entry
        if id(account) not in self.saved:
            self._remember(account)
        if side == "D":
            if pending:
                account.debits_pending += amount
            else:
                account.debits_posted += amount
        elif pending:
            account.credits_pending += amount
        else:
            account.credits_posted += amount
        balance_after = None if pending else account.credits_posted - account.debits_posted
        entry = _NewEntry(record.id, account.id, side, amount, pending, balance_after, self.now)
        entry.hash = account.last_hash = _chain_link(
            account.last_hash,
            record_text or record.id,
            side,
            amount,
            pending,
            balance_after,
            self.now_iso,
        )
        account.entry_count += 1
        self.touched[id(account)] = account
        self.new_entries.append(entry)

    def _check_flags(self, legs: Sequence[Leg], accounts: Sequence[LedgerAccount]) -> None:
        """Refuse the transfer if one of its accounts (``accounts[k]`` is ``legs[k]``'s) went
        where its flags forbid."""
        for a in accounts:
            if a.no_negative and a.debits_posted + a.debits_pending > a.credits_posted:
                needed = sum(x.amount for x in legs if x.account_id == a.id and x.side == "D")
                available = needed - (a.debits_posted + a.debits_pending - a.credits_posted)
                raise errors.InsufficientFunds(
                    f"{a.name} has {available} {a.currency} available; "
                    f"this transfer needs {needed}.",
                    field="amount",
                    available=available,
                    needed=needed,
                )
            if a.no_positive and a.credits_posted + a.credits_pending > a.debits_posted:
                raise errors.LimitExceeded(
                    f"{a.name} may not go above zero.", field="amount", account=a.id
                )

    # -- writing

    def _write(self) -> None:
        """Write the transfers, entries and events made since the last write, and the
        balances of the accounts they touched."""
        if not self.new_transfers:
            return
        events = [
            outbox_row(
                TransfersPosted.of(self.new_transfers, self.new_entries), occurred_at=self.now
            )
        ]
        touched = sorted(self.touched.values(), key=_account_order)
        bulk.write_batch(
            [(Transfer, self.new_transfers), (Entry, self.new_entries), (OutboxEvent, events)],
            LedgerAccount,
            _SNAPSHOT_FIELDS,
            touched,
        )
        self.new_transfers, self.new_entries, self.touched = [], [], {}


_new_object = object.__new__
_set_attribute = object.__setattr__


def _id_and_text(request: TransferRequest) -> tuple[UUID, str]:
    """A new transfer's id (the caller's, if it chose one) and its text."""
    transfer_id = request.transfer_id or new_id()
    return transfer_id, str(transfer_id)


def _result(record: Transfer | _NewTransfer) -> TransferResult:
    """The result of a transfer, its fields set at once (a frozen dataclass's ``__init__``
    sets them one by one through ``object.__setattr__``: three times as long, per transfer)."""
    result = _new_object(TransferResult)
    _set_attribute(
        result,
        "__dict__",
        {
            "transfer_id": record.id,
            "idempotency_key": record.idempotency_key,
            "kind": record.kind,
            "phase": str(record.phase),
            "currency": record.currency,
            "amount": record.amount,
            "created_at": record.created_at,
            "replayed": False,
            "linked_id": record.linked_id,
        },
    )
    return result
