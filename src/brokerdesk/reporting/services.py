"""Commands of reporting: the projectors that add facts to the rollups, and their rebuild.

Every event the projectors care about becomes one *fact* with a stable key (``deal:server:
ticket``, ``deposit:<payment id>``, ``commission:<accrual id>``…). A batch of facts is applied in
the caller's transaction:

1. the keys are inserted into ``AppliedFact`` with "on conflict do nothing … returning": only
   the facts whose key was new are added (a redelivered, re-emitted or replayed event is a
   no-op, also when two workers race on it: the unique key makes the second one wait and skip);
2. the facts are summed per rollup row in memory and written with one keyed upsert per table
   (``INSERT … ON CONFLICT … DO UPDATE SET x = x + excluded.x``), rows in key order so two
   batches lock shared rows in the same order;
3. the projection's state (events applied, newest event time) is moved forward.

``rebuild_rollups`` empties the rollups and replays every stored outbox event through the same
code, so a rebuild equals the incremental result. Clients are attributed to the IB the partners
module holds for them when the fact is applied (a rebuild uses the attribution of that moment).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import structlog
from django.db import connection, transaction
from django.db.models import Q

from brokerdesk.core import audit, clock, metrics
from brokerdesk.core.bus.base import Message
from brokerdesk.core.bus.batch import BATCH_KEY, expand
from brokerdesk.core.errors import ValidationError
from brokerdesk.reporting.models import (
    NO_IB,
    AccountDay,
    AccountRef,
    AmlDay,
    AppliedFact,
    IBDay,
    PaymentDay,
    ProjectionState,
)

log = structlog.get_logger(__name__)

#: The figures an account-day row sums (``AccountDay`` and ``IBDay`` columns).
MEASURES = (
    "deposits",
    "deposit_count",
    "withdrawals",
    "withdrawal_count",
    "volume",
    "deals",
    "profit",
    "charges",
    "ib_commission",
)

#: Event types each projection (named after its stream) reads.
PROJECTED_TYPES: dict[str, frozenset[str]] = {
    "payments": frozenset(
        {"deposit.confirmed", "deposit.reversed", "withdrawal.paid", "withdrawal.returned"}
    ),
    "trading": frozenset({"trading.account_opened", "trading.deal_closed"}),
    "partners": frozenset({"commission.accrued", "commissions.accrued", "commission.corrected"}),
    "compliance": frozenset({"aml.alert_raised"}),
}

_UPSERT_CHUNK = 400


@dataclass
class RollupFact:
    """One fact for the account-day rollup (and the IB-day one)."""

    key: str
    day: date
    currency: str
    client_id: str
    ib_id: str | None = None  # None: the client's IB, looked up when applied
    server: str = ""
    login: int = 0
    figures: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PaymentFact:
    """One payment for the payment-method rollup."""

    key: str
    day: date
    currency: str
    provider: str
    kind: str
    amount: int


@dataclass(frozen=True)
class AmlFact:
    """One AML alert for the AML rollup."""

    key: str
    day: date
    rule: str
    severity: str


@dataclass
class Facts:
    """What a batch of events adds, and the account links it declares."""

    rollups: list[RollupFact] = field(default_factory=list)
    payments: list[PaymentFact] = field(default_factory=list)
    aml: list[AmlFact] = field(default_factory=list)
    accounts: dict[tuple[str, int], tuple[str, str]] = field(default_factory=dict)
    newest: dict[str, datetime] = field(default_factory=dict)  # projection -> event time


@dataclass(frozen=True)
class ApplyResult:
    """How many facts a batch added and how many it skipped as already applied."""

    applied: int
    skipped: int


# ---------------------------------------------------------------------------- parsing


def _when(value: Any, field_name: str) -> datetime:
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        raise ValidationError(
            f"{field_name} is not an ISO 8601 time.", code="bad_time", field=field_name
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _int(payload: dict[str, Any], name: str, default: int | None = None) -> int:
    value = payload.get(name, default)
    if value is None or isinstance(value, bool | float):
        raise ValidationError(f"{name} must be an integer.", code="not_integer", field=name)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValidationError(
            f"{name} must be an integer.", code="not_integer", field=name
        ) from None


def _str(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if value is None or value == "":
        raise ValidationError(f"The event has no {name}.", code="missing", field=name)
    return str(value)


def _payment_provider(kind: str, payload: dict[str, Any]) -> str:
    """The provider of a payment (deposit events carry it; others are looked up)."""
    if payload.get("provider"):
        return str(payload["provider"])
    from brokerdesk.core.errors import NotFound
    from brokerdesk.payments import queries as payments

    try:
        if kind.startswith("deposit"):
            return payments.get_deposit(payload["payment_id"]).provider
        return payments.get_withdrawal(payload["payment_id"]).provider
    except (NotFound, KeyError, ValueError):
        return "unknown"


_PAYMENT_KINDS = {
    "deposit.confirmed": ("deposit", "deposits", "deposit_count", 1),
    "deposit.reversed": ("deposit_reversed", "deposits", "", -1),
    "withdrawal.paid": ("withdrawal_paid", "withdrawals", "withdrawal_count", 1),
    "withdrawal.returned": ("withdrawal_returned", "withdrawals", "", -1),
}


def _payment(m: Message, facts: Facts) -> None:
    kind, amount_field, count_field, sign = _PAYMENT_KINDS[m.type]
    p = m.payload
    payment_id = _str(p, "payment_id")
    amount = _int(p, "amount")
    currency = _str(p, "currency").upper()
    day = _when(m.occurred_at, "occurred_at").date()
    key = f"{kind}:{payment_id}"
    figures = {amount_field: sign * amount}
    if count_field:
        figures[count_field] = 1
    facts.rollups.append(RollupFact(key, day, currency, _str(p, "client_id"), figures=figures))
    provider = _payment_provider(m.type, p)
    facts.payments.append(PaymentFact(key, day, currency, provider, kind, amount))


def _deal(m: Message, facts: Facts, refs: dict[tuple[str, int], tuple[str, str]]) -> None:
    p = m.payload
    server, login, ticket = _str(p, "server"), _int(p, "login"), _int(p, "deal")
    time_msc = _int(p, "time_msc")
    client_id, currency = refs.get((server, login), ("", ""))
    volume = _int(p, "volume_closed", 0) or _int(p, "volume", 0)
    charges = _int(p, "commission", 0) + _int(p, "storage", 0) + _int(p, "fee", 0)
    facts.rollups.append(
        RollupFact(
            f"deal:{server}:{ticket}",
            datetime.fromtimestamp(time_msc / 1000, tz=UTC).date(),
            currency,
            client_id,
            server=server,
            login=login,
            figures={
                "volume": volume,
                "deals": 1,
                "profit": _int(p, "profit", 0),
                "charges": charges,
            },
        )
    )


def _commission(m: Message, facts: Facts) -> None:
    p = m.payload
    day = _when(p.get("occurred_at") or m.occurred_at, "occurred_at").date()
    facts.rollups.append(
        RollupFact(
            f"commission:{_str(p, 'accrual_id')}",
            day,
            _str(p, "currency").upper(),
            str(p.get("client_id") or ""),
            ib_id=_str(p, "ib_id"),
            figures={"ib_commission": _int(p, "amount")},
        )
    )


def _commission_batch(m: Message, facts: Facts) -> None:
    """A batch of accruals (``commissions.accrued``): its totals per IB, client, day and
    currency, read from the partners module (the event names the batch, not each accrual)."""
    from brokerdesk.partners.queries import batch_totals

    for t in batch_totals(m.payload):
        client = str(t.client_id) if t.client_id else ""
        facts.rollups.append(
            RollupFact(
                f"commissions:{m.event_id}:{t.ib_id}:{client}:{t.day}:{t.currency}",
                t.day,
                t.currency.upper(),
                client,
                ib_id=str(t.ib_id),
                figures={"ib_commission": t.amount},
            )
        )


def _commission_correction(m: Message, facts: Facts) -> None:
    """A dealer correction's net change of commission (new - old) per IB, on the deal's day."""
    p = m.payload
    day = _when(_str(p, "day"), "day").date()
    client = str(p.get("client_id") or "")
    change: dict[str, int] = {}
    for line in p.get("lines") or []:
        ib = str(line.get("ib_id") or "")
        change[ib] = change.get(ib, 0) + int(line.get("new") or 0) - int(line.get("old") or 0)
    for ib, amount in sorted(change.items()):
        if ib and amount:
            facts.rollups.append(
                RollupFact(
                    f"commission-correction:{_str(p, 'deal_key')}:{_int(p, 'version_msc')}:{ib}",
                    day,
                    _str(p, "currency").upper(),
                    client,
                    ib_id=ib,
                    figures={"ib_commission": amount},
                )
            )


def _aml(m: Message, facts: Facts) -> None:
    p = m.payload
    facts.aml.append(
        AmlFact(
            f"aml:{_str(p, 'alert_id')}",
            _when(m.occurred_at, "occurred_at").date(),
            _str(p, "rule"),
            str(p.get("severity") or "unknown"),
        )
    )


def parse(messages: Sequence[Message]) -> Facts:
    """The facts of a batch (types no projection reads are ignored).

    An unusable payload raises ``ValidationError``: the consumer runner then retries the batch
    message by message and dead-letters that one, so it is seen rather than lost.
    """
    facts = Facts()
    for m in messages:
        if m.type == "trading.account_opened":
            p = m.payload
            facts.accounts[(_str(p, "server"), _int(p, "login"))] = (
                _str(p, "client_id"),
                _str(p, "currency").upper(),
            )
    deal_logins = {
        (str(m.payload.get("server")), int(m.payload.get("login") or 0))
        for m in messages
        if m.type == "trading.deal_closed"
    }
    refs = {**account_refs(deal_logins - facts.accounts.keys()), **facts.accounts}
    for m in messages:
        projection = m.stream if m.stream in PROJECTED_TYPES else _projection_of(m.type)
        if projection is None or m.type not in PROJECTED_TYPES[projection]:
            continue
        if m.type in _PAYMENT_KINDS:
            _payment(m, facts)
        elif m.type == "trading.deal_closed":
            _deal(m, facts, refs)
        elif m.type == "commission.accrued":
            _commission(m, facts)
        elif m.type == "commissions.accrued":
            _commission_batch(m, facts)
        elif m.type == "commission.corrected":
            _commission_correction(m, facts)
        elif m.type == "aml.alert_raised":
            _aml(m, facts)
        at = _when(m.occurred_at, "occurred_at")
        if projection not in facts.newest or facts.newest[projection] < at:
            facts.newest[projection] = at
    return facts


def _projection_of(event_type: str) -> str | None:
    for name, types in PROJECTED_TYPES.items():
        if event_type in types:
            return name
    return None


def account_refs(logins: Iterable[tuple[str, int]]) -> dict[tuple[str, int], tuple[str, str]]:
    """(client id, currency) of trading accounts: our own links first, then the clients module."""
    wanted = set(logins)
    if not wanted:
        return {}
    out: dict[tuple[str, int], tuple[str, str]] = {}
    servers = {s for s, _ in wanted}
    rows = AccountRef.objects.filter(
        server__in=servers, login__in={login for _, login in wanted}
    ).values_list("server", "login", "client_id", "currency")
    for server, login, client_id, currency in rows:
        if (server, login) in wanted:
            out[(server, login)] = (client_id, currency)
    missing = wanted - out.keys()
    if missing:
        from brokerdesk.clients.queries import client_for_login

        for server, login in missing:
            view = client_for_login(server, login)
            if view is not None:
                out[(server, login)] = (str(view.client_id), view.currency.upper())
    return out


def ibs_of(client_ids: Iterable[str]) -> dict[str, str]:
    """The IB each client is attributed to ("" for none), from the partners module."""
    from brokerdesk.partners.attribution import attribution_of

    out: dict[str, str] = {}
    for client_id in set(client_ids):
        attribution = attribution_of(client_id) if _is_uuid(client_id) else None
        out[client_id] = str(attribution.ib_id) if attribution else NO_IB
    return out


def _is_uuid(value: str) -> bool:
    from uuid import UUID

    try:
        UUID(value)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------- applying


def apply_messages(messages: Sequence[Message]) -> ApplyResult:
    """Add the facts of a batch of events to the rollups, once each (caller's transaction)."""
    facts = parse(messages)
    save_account_refs(facts.accounts)
    result = apply_facts(facts)
    for projection, newest in facts.newest.items():
        touch_projection(projection, newest, result.applied)
    return result


def save_account_refs(accounts: dict[tuple[str, int], tuple[str, str]]) -> None:
    """Record trading accounts' owners and currencies (keyed: a repeat changes nothing)."""
    if not accounts:
        return
    rows = [(s, lg, c, cur) for (s, lg), (c, cur) in sorted(accounts.items())]
    marks = ", ".join(["(%s, %s, %s, %s)"] * len(rows))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {AccountRef._meta.db_table} (server, login, client_id, currency) "  # noqa: S608
            f"VALUES {marks} ON CONFLICT (server, login) DO UPDATE SET "
            "client_id = excluded.client_id, currency = excluded.currency",
            [v for row in rows for v in row],
        )


def apply_facts(facts: Facts) -> ApplyResult:
    """Keep the facts whose key is new, and add them to the rollups."""
    keys = [f.key for f in facts.rollups] + [f.key for f in facts.payments]
    keys += [f.key for f in facts.aml]
    fresh = claim_keys(keys)
    rollups = [f for f in facts.rollups if f.key in fresh]
    payments = [f for f in facts.payments if f.key in fresh]
    aml = [f for f in facts.aml if f.key in fresh]
    ib_of = ibs_of(f.client_id for f in rollups if f.ib_id is None)
    add_account_days(rollups, ib_of)
    add_payment_days(payments)
    add_aml_days(aml)
    skipped = len(set(keys)) - len(fresh)
    if skipped:
        metrics.IDEMPOTENT_REPLAYS.labels(kind="reporting_fact").inc(skipped)
    return ApplyResult(applied=len(fresh), skipped=skipped)


def claim_keys(keys: Sequence[str]) -> set[str]:
    """Insert the keys; return those that were not there yet (the facts to add now)."""
    unique = sorted(set(keys))
    fresh: set[str] = set()
    table = AppliedFact._meta.db_table
    with connection.cursor() as cursor:
        for start in range(0, len(unique), 1000):
            chunk = unique[start : start + 1000]
            marks = ", ".join(["(%s)"] * len(chunk))
            cursor.execute(
                f'INSERT INTO {table} ("key") VALUES {marks} '  # noqa: S608
                'ON CONFLICT ("key") DO NOTHING RETURNING "key"',
                chunk,
            )
            fresh.update(row[0] for row in cursor.fetchall())
    return fresh


def _upsert(
    table: str, keys: Sequence[str], sums: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Add ``rows`` (key columns, then summed columns) to ``table``, in key order."""
    if not rows:
        return
    columns = [f'"{c}"' for c in (*keys, *sums)]
    row_marks = "(" + ", ".join(["%s"] * len(columns)) + ")"
    updates = ", ".join(f'"{c}" = {table}."{c}" + excluded."{c}"' for c in sums)
    ordered = sorted(rows, key=lambda r: tuple(str(v) for v in r[: len(keys)]))
    with connection.cursor() as cursor:
        for start in range(0, len(ordered), _UPSERT_CHUNK):
            chunk = ordered[start : start + _UPSERT_CHUNK]
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608 - names from models
                f"VALUES {', '.join([row_marks] * len(chunk))} "
                f"ON CONFLICT ({', '.join(columns[: len(keys)])}) DO UPDATE SET {updates}",
                [v for row in chunk for v in row],
            )


def add_account_days(facts: Sequence[RollupFact], ib_of: dict[str, str]) -> None:
    """Sum the facts per account-day and per IB-day row and upsert both tables."""
    accounts: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * len(MEASURES))
    ibs: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * len(MEASURES))
    for f in facts:
        ib_id = f.ib_id if f.ib_id is not None else ib_of.get(f.client_id, NO_IB)
        account_row = accounts[(f.day, f.currency, ib_id, f.client_id, f.server, f.login)]
        ib_row = ibs[(f.day, f.currency, ib_id)]
        for index, name in enumerate(MEASURES):
            value = f.figures.get(name, 0)
            account_row[index] += value
            ib_row[index] += value
    _upsert(
        AccountDay._meta.db_table,
        ["day", "currency", "ib_id", "client_id", "server", "login"],
        MEASURES,
        [(*k, *v) for k, v in accounts.items()],
    )
    _upsert(
        IBDay._meta.db_table,
        ["day", "currency", "ib_id"],
        MEASURES,
        [(*k, *v) for k, v in ibs.items()],
    )


def add_payment_days(facts: Sequence[PaymentFact]) -> None:
    """Count and sum payments per day x provider x currency x kind."""
    sums: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0])
    for f in facts:
        row = sums[(f.day, f.currency, f.provider, f.kind)]
        row[0] += 1
        row[1] += f.amount
    _upsert(
        PaymentDay._meta.db_table,
        ["day", "currency", "provider", "kind"],
        ["count", "amount"],
        [(*k, *v) for k, v in sums.items()],
    )


def add_aml_days(facts: Sequence[AmlFact]) -> None:
    """Count AML alerts per day x rule x severity."""
    counts: dict[tuple[Any, ...], int] = defaultdict(int)
    for f in facts:
        counts[(f.day, f.rule, f.severity)] += 1
    _upsert(
        AmlDay._meta.db_table,
        ["day", "rule", "severity"],
        ["alerts"],
        [(*k, v) for k, v in counts.items()],
    )


def touch_projection(name: str, newest_event: datetime, applied: int) -> None:
    """Move a projection's state forward: events applied, newest event time, apply time."""
    table = ProjectionState._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (name, events, last_event_at, last_applied_at) "  # noqa: S608
            "VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET "
            f"events = {table}.events + excluded.events, "
            f"last_event_at = CASE WHEN {table}.last_event_at IS NULL "
            f"OR {table}.last_event_at < excluded.last_event_at "
            f"THEN excluded.last_event_at ELSE {table}.last_event_at END, "
            "last_applied_at = excluded.last_applied_at",
            [name, applied, newest_event, clock.now()],
        )


# ---------------------------------------------------------------------------- rebuild


@dataclass(frozen=True)
class RebuildResult:
    """What a rebuild replayed."""

    events: int
    facts: int


def _replay_outbox(batch_size: int) -> tuple[int, int]:
    """Apply every stored outbox event the projections read, in order; (events, facts)."""
    from brokerdesk.core.models import OutboxEvent

    types = sorted(set().union(*PROJECTED_TYPES.values()))
    events = facts = 0
    rows = (
        # batch events (one row for many events, e.g. trading's deal_closed) by their items' type
        OutboxEvent.objects.filter(Q(type__in=types) | Q(**{f"payload__{BATCH_KEY}__in": types}))
        .order_by("occurred_at", "id")
        .values_list("id", "stream", "type", "version", "aggregate_id", "payload", "occurred_at")
    )
    batch: list[Message] = []
    for event_id, stream, type_, version, aggregate, payload, occurred_at in rows.iterator(
        chunk_size=batch_size
    ):
        message = Message(
            str(event_id), stream, type_, payload, occurred_at.isoformat(), version, aggregate
        )
        batch.extend(m for m in expand(message) if m.type in types)
        if len(batch) >= batch_size:
            facts += apply_messages(batch).applied
            events += len(batch)
            batch = []
    if batch:
        facts += apply_messages(batch).applied
        events += len(batch)
    return events, facts


def rebuild_rollups(*, actor: str = "system", batch_size: int = 2000) -> RebuildResult:
    """Empty every rollup and replay the stored outbox events into them (one transaction)."""
    with transaction.atomic():
        for model in (AccountDay, IBDay, PaymentDay, AmlDay, AppliedFact, ProjectionState):
            model.objects.all().delete()
        events, facts = _replay_outbox(batch_size)
        audit.record(
            actor=actor,
            action="reporting.rollups_rebuilt",
            object_type="reporting_rollups",
            object_id="all",
            after={"events": events, "facts": facts},
        )
    log.info("reporting_rollups_rebuilt", events=events, facts=facts)
    return RebuildResult(events=events, facts=facts)


def catch_up(*, batch_size: int = 2000) -> RebuildResult:
    """Apply stored events the projectors have not applied yet (keyed: the rest is skipped)."""
    with transaction.atomic():
        events, facts = _replay_outbox(batch_size)
    return RebuildResult(events=events, facts=facts)
