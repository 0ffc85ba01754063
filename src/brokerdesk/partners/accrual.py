"""The accrual engine and the commission state machine.

``accrue_deals`` turns a batch of closed deals into accruals in one transaction: each deal is
recorded once (``DealRecord``, keyed ``server:deal``; a deal already recorded is skipped, so a
rerun or a redelivery adds nothing), commissioned under the plan version valid at its close
time, split between the direct IB and its uplines, and posted to the ledger
(``ib_commission_expense`` → the IB's ``payable`` bucket) with an idempotency key built from the
accrual's unique key (deal, IB, plan version, level, part). A deal that earns nothing leaves an
``Exclusion`` naming the rule. The read models (``IBDailyActivity``) and the counters behind
tiers and CPA are updated in the same transaction.

States: accrued → approved → payable → paid (``TRANSITIONS``); accrued, approved or payable
may be cancelled (a ledger reversal). ``pay_ib`` moves payable accruals to the IB's wallet;
``adjust`` is the only manual change: a reasoned, audited compensating accrual the IB sees.
"""

from __future__ import annotations

import hashlib
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from django.db.models import Field, Model

from brokerdesk.core import audit, bulk, clock
from brokerdesk.core.errors import (
    DomainError,
    IllegalTransition,
    NotFound,
    ValidationError,
)
from brokerdesk.core.events import emit, emit_many
from brokerdesk.core.ids import new_id
from brokerdesk.ledger import services as ledger
from brokerdesk.ledger.errors import AccountNotFound
from brokerdesk.ledger.models import Bucket, OwnerType
from brokerdesk.partners import hierarchy, rules
from brokerdesk.partners.deals import ClosedDeal, deal_payload
from brokerdesk.partners.events import CommissionAccrued, CommissionPaid
from brokerdesk.partners.models import (
    IB,
    Accrual,
    AccrualKind,
    AccrualState,
    Attribution,
    ClientFunding,
    ClientVolume,
    DealRecord,
    Exclusion,
    IBDailyActivity,
    IBPeriodVolume,
    IBStatus,
    Payout,
    PlanVersion,
)
from brokerdesk.partners.permissions import staff_actor
from brokerdesk.partners.plans import PlanBook
from brokerdesk.staff.roles import Role

S = AccrualState
TRANSITIONS: dict[str, frozenset[str]] = {
    S.ACCRUED: frozenset({S.APPROVED, S.CANCELLED}),
    S.APPROVED: frozenset({S.PAYABLE, S.CANCELLED}),
    S.PAYABLE: frozenset({S.PAID, S.CANCELLED}),
    S.PAID: frozenset(),
    S.CANCELLED: frozenset(),
}

FactsProvider = Callable[[Iterable[UUID]], dict[UUID, rules.ClientFacts]]


def policy_facts(client_ids: Iterable[UUID]) -> dict[UUID, rules.ClientFacts]:
    """Country, KYC state and the compliance decision ``may(client, "earn_commission")``."""
    from brokerdesk.clients.queries import get_client
    from brokerdesk.compliance.queries import kyc_status, may

    out: dict[UUID, rules.ClientFacts] = {}
    for cid in client_ids:
        try:
            client = get_client(cid)
            decision = may(cid, "earn_commission")
            out[cid] = rules.ClientFacts(
                country=client.country,
                kyc_state=kyc_status(cid).state,
                policy_allowed=decision.allowed,
                policy_reason=f"{decision.reason_code}: {decision.reason}",
            )
        except DomainError as exc:
            out[cid] = rules.ClientFacts(policy_allowed=False, policy_reason=exc.message)
    return out


def _login_clients(deals: Sequence[ClosedDeal]) -> dict[tuple[str, int], UUID | None]:
    from brokerdesk.clients.queries import client_for_login

    out: dict[tuple[str, int], UUID | None] = {}
    for d in deals:
        if d.client_id is None and (d.server, d.login) not in out:
            view = client_for_login(d.server, d.login)
            out[(d.server, d.login)] = view.client_id if view else None
    return out


@dataclass
class AccrualReport:
    """What one ``accrue_deals`` call did."""

    deals: int = 0
    new_deals: int = 0
    skipped: int = 0
    accruals: int = 0
    exclusions: int = 0
    amount: dict[str, int] = field(default_factory=dict)


def accrual_key(
    source_key: str, ib_id: UUID, version_id: UUID | None, level: int, part: str
) -> str:
    """The ledger idempotency key of an accrual: its unique key as a string."""
    return f"ibc:{source_key}:{ib_id}:{version_id}:{level}:{part}"


class _Batch:
    def __init__(self, deals: Sequence[ClosedDeal], facts: FactsProvider) -> None:
        self.deals = deals
        self.facts_provider = facts
        self.now = clock.now()
        self.records: list[DealRecord] = []
        self.accruals: list[Accrual] = []
        self.exclusions: list[Exclusion] = []
        self.period_volume: dict[tuple[UUID, date], int] = {}
        self.period_delta: dict[tuple[UUID, date], int] = defaultdict(int)
        self.client_delta: dict[UUID, list[int]] = defaultdict(lambda: [0, 0])
        self.daily: dict[tuple[UUID, date, int, str], list[int]] = defaultdict(lambda: [0, 0, 0])
        self.cpa_candidates: dict[UUID, tuple[UUID, PlanVersion, datetime]] = {}
        self.accounts: dict[str, UUID] = {}
        self.ib_currency: dict[UUID, str] = {}

    def exclude(
        self,
        source_key: str,
        record: DealRecord | None,
        ib_id: UUID,
        level: int,
        client_id: UUID | None,
        version: PlanVersion | None,
        rule: str,
        detail: str,
        when: datetime,
    ) -> None:
        self.exclusions.append(
            Exclusion(
                source_key=source_key,
                deal=record,
                ib_id=ib_id,
                level=level,
                client_id=client_id,
                plan_version=version,
                rule=rule,
                detail=detail,
                occurred_at=when,
                recorded_at=self.now,
            )
        )

    def accrue(
        self,
        *,
        kind: str,
        source_key: str,
        record: DealRecord | None,
        ib_id: UUID,
        level: int,
        client_id: UUID,
        version: PlanVersion,
        currency: str,
        amount: int,
        remainder_ppm: int,
        volume: int,
        computation: dict[str, Any],
        when: datetime,
        holdback: tuple[int, int],
    ) -> None:
        bps, days = holdback
        main, held = rules.split_holdback(amount, bps)
        for part, value in (("main", main), ("holdback", held)):
            if value <= 0:
                continue
            self.accruals.append(
                Accrual(
                    id=new_id(),
                    source_key=source_key,
                    kind=kind,
                    part=part,
                    ib_id=ib_id,
                    level=level,
                    deal=record,
                    client_id=client_id,
                    plan_version=version,
                    currency=currency,
                    amount=value,
                    remainder_ppm=remainder_ppm if part == "main" else 0,
                    volume=volume if part == "main" else 0,
                    computation={
                        **computation,
                        "part": part,
                        "holdback_bps": bps,
                        "part_amount": value,
                    },
                    state=S.ACCRUED,
                    release_at=when + timedelta(days=days) if part == "holdback" else None,
                    occurred_at=when,
                    accrued_at=self.now,
                    state_changed_at=self.now,
                )
            )
            self.daily[(ib_id, when.date(), level, currency)][2] += value

    def run(self) -> AccrualReport:
        report = AccrualReport(deals=len(self.deals))
        unique: dict[str, ClosedDeal] = {}
        for d in self.deals:
            unique.setdefault(d.key, d)
        done = set(DealRecord.objects.filter(pk__in=list(unique)).values_list("key", flat=True))
        fresh = sorted(
            (d for k, d in unique.items() if k not in done), key=lambda d: (d.closed_at, d.key)
        )
        report.skipped = len(self.deals) - len(fresh)
        report.new_deals = len(fresh)
        if not fresh:
            return report
        logins = _login_clients(fresh)
        client_of = {d.key: d.client_id or logins.get((d.server, d.login)) for d in fresh}
        client_ids = {c for c in client_of.values() if c is not None}
        attributed = dict(
            Attribution.objects.filter(client_id__in=client_ids).values_list("client_id", "ib_id")
        )
        direct_ids = sorted(set(attributed.values()))
        book = PlanBook(direct_ids)
        max_levels = max(
            (book.rules(v).override_levels for vs in book.versions.values() for v in vs),
            default=0,
        )
        uplines = hierarchy.uplines(direct_ids, max_levels)
        every_ib = set(direct_ids) | {n.ib_id for ns in uplines.values() for n in ns}
        status = self._load_ibs(every_ib)
        facts = self.facts_provider(sorted(c for c in client_ids if c in attributed))
        periods = {
            (attributed[c], rules.period_start(d.closed_at))
            for d in fresh
            if (c := client_of[d.key]) in attributed
        }
        for ib_id, period in periods:
            self.period_volume[(ib_id, period)] = 0
        for row in IBPeriodVolume.objects.filter(
            ib_id__in={p[0] for p in periods}, period__in={p[1] for p in periods}
        ):
            if (row.ib_id, row.period) in self.period_volume:
                self.period_volume[(row.ib_id, row.period)] = row.volume

        for deal in fresh:
            self._deal(deal, client_of[deal.key], attributed, book, uplines, status, facts)
        self._cpa(book, uplines, status)
        self._write()
        report.accruals = len(self.accruals)
        report.exclusions = len(self.exclusions)
        for a in self.accruals:
            report.amount[a.currency] = report.amount.get(a.currency, 0) + a.amount
        return report

    def run_cpa(self, client_ids: list[UUID]) -> AccrualReport:
        """CPA only, for clients whose plan (valid now) has one and who pass its client
        filters."""
        report = AccrualReport()
        attributed = dict(
            Attribution.objects.filter(client_id__in=client_ids).values_list("client_id", "ib_id")
        )
        direct_ids = sorted(set(attributed.values()))
        book = PlanBook(direct_ids)
        max_levels = max(
            (book.rules(v).override_levels for vs in book.versions.values() for v in vs),
            default=0,
        )
        uplines = hierarchy.uplines(direct_ids, max_levels)
        status = self._load_ibs(set(direct_ids) | {n.ib_id for ns in uplines.values() for n in ns})
        facts = self.facts_provider(sorted(attributed))
        for client_id, ib_id in attributed.items():
            version = book.version_for(ib_id, self.now)
            if version is None or status.get(ib_id) != IBStatus.ACTIVE:
                continue
            plan_rules = book.rules(version)
            if plan_rules.cpa is None or rules.check_client(plan_rules.filters, facts[client_id]):
                continue
            self.cpa_candidates[client_id] = (ib_id, version, self.now)
        self._cpa(book, uplines, status)
        self._write()
        report.accruals = len(self.accruals)
        for a in self.accruals:
            report.amount[a.currency] = report.amount.get(a.currency, 0) + a.amount
        return report

    def _load_ibs(self, ids: set[UUID]) -> dict[UUID, str]:
        status: dict[UUID, str] = {}
        for i, st, cur in IB.objects.filter(pk__in=ids).values_list("id", "status", "currency"):
            status[i] = st
            self.ib_currency[i] = cur
        return status

    def _deal(
        self,
        deal: ClosedDeal,
        client_id: UUID | None,
        attributed: dict[UUID, UUID],
        book: PlanBook,
        uplines: dict[UUID, list[hierarchy.TreeNode]],
        status: dict[UUID, str],
        facts: dict[UUID, rules.ClientFacts],
    ) -> None:
        ib_id = attributed.get(client_id) if client_id else None
        record = DealRecord(
            key=deal.key,
            server=deal.server,
            login=deal.login,
            deal=deal.deal,
            client_id=client_id,
            ib_id=ib_id,
            closed_at=deal.closed_at,
            symbol=deal.symbol,
            volume=deal.volume,
            profit=deal.profit,
            commission=deal.commission,
            swap=deal.swap,
            currency=deal.currency,
            group=deal.group,
            position_id=deal.position_id,
            opened_at=deal.opened_at,
            payload=deal_payload(deal),
            processed_at=self.now,
        )
        self.records.append(record)
        if ib_id is None or client_id is None:
            return
        when = deal.closed_at
        direct: UUID = ib_id
        day_row = self.daily[(ib_id, when.date(), 0, self.ib_currency[ib_id])]
        day_row[0] += 1
        day_row[1] += deal.volume
        version = book.version_for(ib_id, when)

        def exclude(rule: str, detail: str, level: int = 0, who: UUID = direct) -> None:
            self.exclude(deal.key, record, who, level, client_id, version, rule, detail, when)

        if version is None:
            return exclude("no_plan", "the IB had no commission plan when the deal closed")
        if status.get(ib_id) != IBStatus.ACTIVE:
            return exclude("ib_suspended", "the IB was suspended")
        plan_rules = book.rules(version)
        currency = version.plan.currency
        if deal.currency and deal.currency != currency:
            return exclude("currency_mismatch", f"deal in {deal.currency}, plan pays in {currency}")
        failed = rules.check_filters(deal, plan_rules.filters, facts[client_id])
        if failed is not None:
            return exclude(*failed)
        period = rules.period_start(when)
        before = self.period_volume[(ib_id, period)]
        self.period_volume[(ib_id, period)] = before + deal.volume
        self.period_delta[(ib_id, period)] += deal.volume
        self.client_delta[client_id][0] += deal.volume
        self.client_delta[client_id][1] += 1
        if plan_rules.cpa is not None:
            self.cpa_candidates.setdefault(client_id, (ib_id, version, when))
        if not any(c.type != "cpa" for c in plan_rules.components):
            return None
        pool = rules.compute_pool(deal, plan_rules, before)
        if pool.amount <= 0:
            return exclude(
                "zero_commission", f"the plan's components produce nothing: {list(pool.parts)}"
            )
        self._split(
            kind=AccrualKind.DEAL,
            source_key=deal.key,
            record=record,
            ib_id=ib_id,
            client_id=client_id,
            version=version,
            plan_rules=plan_rules,
            pool=pool.exact,
            currency=currency,
            volume=deal.volume,
            when=when,
            uplines=uplines[ib_id],
            status=status,
            working={
                "pool": {
                    "parts": list(pool.parts),
                    "multiplier_bps": pool.multiplier_bps,
                    "period_volume_before": before,
                    "deal_currency": deal.currency or f"{currency} (assumed: none sent)",
                    "exact": rules.frac(pool.exact),
                    "amount": pool.amount,
                }
            },
        )
        return None

    def _split(
        self,
        *,
        kind: str,
        source_key: str,
        record: DealRecord | None,
        ib_id: UUID,
        client_id: UUID,
        version: PlanVersion,
        plan_rules: rules.PlanRules,
        pool: Any,
        currency: str,
        volume: int,
        when: datetime,
        uplines: list[hierarchy.TreeNode],
        status: dict[UUID, str],
        working: dict[str, Any],
    ) -> None:
        shares = rules.split_levels(pool, plan_rules.overrides, len(uplines))
        base = {
            **working,
            "plan": version.plan.code,
            "version": version.number,
            "shares": [{"level": s.level, "bps": s.bps, "amount": s.amount} for s in shares],
        }
        for share in shares:
            who = ib_id if share.level == 0 else uplines[share.level - 1].ib_id
            if status.get(who) != IBStatus.ACTIVE:
                self.exclude(
                    source_key,
                    record,
                    who,
                    share.level,
                    client_id,
                    version,
                    "ib_suspended",
                    "the IB was suspended",
                    when,
                )
                continue
            if share.amount <= 0:
                continue
            if share.level:
                row = self.daily[(who, when.date(), share.level, currency)]
                row[0] += 1
                row[1] += volume
            self.accrue(
                kind=kind,
                source_key=source_key,
                record=record,
                ib_id=who,
                level=share.level,
                client_id=client_id,
                version=version,
                currency=currency,
                amount=share.amount,
                remainder_ppm=share.remainder_ppm,
                volume=volume,
                computation={
                    **base,
                    "level": share.level,
                    "bps": share.bps,
                    "share_exact": rules.frac(share.exact),
                    "amount": share.amount,
                    "remainder_ppm": share.remainder_ppm,
                },
                when=when,
                holdback=(plan_rules.holdback_bps, plan_rules.holdback_days),
            )

    def _cpa(
        self, book: PlanBook, uplines: dict[UUID, list[hierarchy.TreeNode]], status: dict[UUID, str]
    ) -> None:
        if not self.cpa_candidates:
            return
        clients = list(self.cpa_candidates)
        paid = set(
            Accrual.objects.filter(
                kind=AccrualKind.CPA, source_key__in=[f"cpa:{c}" for c in clients]
            ).values_list("client_id", flat=True)
        )
        volumes = dict(
            ClientVolume.objects.filter(client_id__in=clients).values_list("client_id", "volume")
        )
        funding = dict(
            ClientFunding.objects.filter(client_id__in=clients).values_list(
                "client_id", "first_amount"
            )
        )
        for client_id, (ib_id, version, when) in self.cpa_candidates.items():
            if client_id in paid:
                continue
            cpa = book.rules(version).cpa
            assert cpa is not None
            volume = volumes.get(client_id, 0) + self.client_delta[client_id][0]
            due, why = rules.cpa_due(
                cpa, first_deposit=funding.get(client_id), client_volume=volume
            )
            if not due:
                continue
            self._split(
                kind=AccrualKind.CPA,
                source_key=f"cpa:{client_id}",
                record=None,
                ib_id=ib_id,
                client_id=client_id,
                version=version,
                plan_rules=book.rules(version),
                pool=Fraction(cpa.amount),
                currency=version.plan.currency,
                volume=0,
                when=when,
                uplines=uplines[ib_id],
                status=status,
                working={"cpa": {"amount": cpa.amount, "mode": cpa.mode, "qualified": why}},
            )

    def _requests(self) -> list[list[ledger.TransferRequest]]:
        """One balanced transfer per currency for the whole batch: commission expense → each
        IB's payable (its sum); the accrual rows keep the per-deal detail and point to it."""
        sums: dict[str, dict[UUID, int]] = defaultdict(lambda: defaultdict(int))
        for a in self.accruals:
            sums[a.currency][a.ib_id] += a.amount
        requests: list[list[ledger.TransferRequest]] = []
        for currency, per_ib in sorted(sums.items()):
            payable = self._payables(sorted(per_ib), currency)
            keys = sorted(
                accrual_key(a.source_key, a.ib_id, a.plan_version_id, a.level, a.part)
                for a in self.accruals
                if a.currency == currency
            )
            digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()
            requests.append(
                [
                    ledger.TransferRequest(
                        idempotency_key=f"ibc-batch:{currency}:{digest}",
                        kind="ib_commission",
                        currency=currency,
                        legs=(
                            ledger.debit(self._expense(currency), sum(per_ib.values())),
                            *(
                                ledger.credit(payable[ib], amount)
                                for ib, amount in sorted(per_ib.items(), key=lambda kv: str(kv[0]))
                            ),
                        ),
                        metadata={"accruals": len(keys), "deals": len(self.records)},
                    )
                ]
            )
        return requests

    def _write(self) -> None:
        requests = self._requests() if self.accruals else []
        outcomes = ledger.post_batch(list(requests)) if requests else []
        if any(isinstance(o, AccountNotFound) for (o,) in outcomes):
            # a cached account id is gone (a rolled-back transaction): look them up again
            _forget_accounts()
            self.accounts.clear()
            requests = self._requests()
            outcomes = ledger.post_batch(list(requests))
        posted: dict[str, UUID] = {}
        for (request,), (outcome,) in zip(requests, outcomes, strict=True):
            if isinstance(outcome, DomainError):
                raise outcome
            posted[request.currency] = outcome.transfer_id
        for accrual in self.accruals:
            accrual.ledger_transfer_id = posted[accrual.currency]
        bulk.insert(DealRecord, self.records)  # COPY on PostgreSQL
        bulk.insert(Accrual, self.accruals)
        bulk.insert(Exclusion, self.exclusions)
        _bump_period_volume(self.period_delta)
        _bump_client_volume(self.client_delta)
        _bump_daily(self.daily, self.now)
        emit_many([_accrued_event(a) for a in self.accruals])

    def _payables(self, ib_ids: list[UUID], currency: str) -> dict[UUID, UUID]:
        """The payable accounts of ``ib_ids``, the missing ones opened in one statement."""
        unknown = [ib for ib in ib_ids if f"{ib}:{currency}" not in _ACCOUNTS]
        if unknown:
            opened = ledger.open_accounts(OwnerType.IB, map(str, unknown), currency, Bucket.PAYABLE)
            with _ACCOUNTS_LOCK:
                _ACCOUNTS.update({f"{ib}:{currency}": opened[str(ib)] for ib in unknown})
        return {ib: self._payable(ib, currency) for ib in ib_ids}

    def _expense(self, currency: str) -> UUID:
        return self._account(
            currency, lambda: ledger.system_account("ib_commission_expense", currency).id
        )

    def _payable(self, ib_id: UUID, currency: str) -> UUID:
        return self._account(
            f"{ib_id}:{currency}",
            lambda: ledger.open_account(OwnerType.IB, str(ib_id), currency, Bucket.PAYABLE).id,
        )

    def _account(self, key: str, opener: Callable[[], UUID]) -> UUID:
        found = self.accounts.get(key) or _ACCOUNTS.get(key)
        if found is None:
            found = opener()
            with _ACCOUNTS_LOCK:
                _ACCOUNTS[key] = found
        self.accounts[key] = found
        return found


# Ledger account ids by "ib:currency" (accounts are never deleted; ids are looked up again
# when the ledger says one is unknown, e.g. after a rolled-back transaction).
_ACCOUNTS: dict[str, UUID] = {}
_ACCOUNTS_LOCK = threading.Lock()


def _forget_accounts() -> None:
    with _ACCOUNTS_LOCK:
        _ACCOUNTS.clear()


def _accrued_event(a: Accrual) -> CommissionAccrued:
    return CommissionAccrued(
        accrual_id=str(a.id),
        ib_id=str(a.ib_id),
        kind=a.kind,
        source_key=a.source_key,
        level=a.level,
        amount=a.amount,
        currency=a.currency,
        plan_version_id=str(a.plan_version_id) if a.plan_version_id else None,
        client_id=str(a.client_id) if a.client_id else None,
        occurred_at=a.occurred_at.isoformat(),
    )


def upsert_add(
    model: type[Model],
    keys: Sequence[str],
    adds: Sequence[str],
    rows: Iterable[tuple[Any, ...]],
    sets: Sequence[tuple[str, Any]] = (),
) -> int:
    """``INSERT … ON CONFLICT (keys) DO UPDATE SET col = col + excluded.col`` in one statement
    (SQLite and PostgreSQL), rows sorted by key so concurrent batches lock in the same order.
    Each row is the key values followed by the amounts to add; ``sets`` are plain assignments."""
    ordered = sorted(rows, key=lambda r: tuple(str(v) for v in r[: len(keys)]))
    if not ordered:
        return 0
    meta = model._meta

    def concrete(name: str) -> Field[Any, Any]:
        found = meta.get_field(name)
        assert isinstance(found, Field)
        return found

    fields = [concrete(name) for name in (*keys, *adds)]
    set_fields = [concrete(n) for n, _ in sets]
    columns: list[str] = [str(f.column) for f in (*fields, *set_fields)]
    table = meta.db_table
    qn = connection.ops.quote_name
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    updates = [
        f"{qn(c)} = {qn(table)}.{qn(c)} + excluded.{qn(c)}"
        for c in columns[len(keys) : len(fields)]
    ]
    updates += [f"{qn(c)} = excluded.{qn(c)}" for c in columns[len(fields) :]]
    conflict = ", ".join(qn(c) for c in columns[: len(keys)])
    with connection.cursor() as cursor:
        for i in range(0, len(ordered), 500):
            chunk = ordered[i : i + 500]
            params: list[Any] = []
            for row in chunk:
                params += [
                    f.get_db_prep_value(v, connection) for f, v in zip(fields, row, strict=True)
                ]
                params += [
                    f.get_db_prep_value(v, connection)
                    for f, (_, v) in zip(set_fields, sets, strict=True)
                ]
            cursor.execute(
                f"INSERT INTO {qn(table)} ({', '.join(qn(c) for c in columns)}) "  # noqa: S608
                f"VALUES {', '.join([placeholders] * len(chunk))} "
                f"ON CONFLICT ({conflict}) DO UPDATE SET {', '.join(updates)}",
                params,
            )
    return len(ordered)


def _bump_period_volume(delta: dict[tuple[UUID, date], int]) -> None:
    upsert_add(
        IBPeriodVolume, ("ib", "period"), ("volume",), ((i, p, v) for (i, p), v in delta.items())
    )


def _bump_client_volume(delta: dict[UUID, list[int]]) -> None:
    upsert_add(
        ClientVolume,
        ("client_id",),
        ("volume", "deals"),
        ((c, v, d) for c, (v, d) in delta.items()),
    )


def _bump_daily(daily: dict[tuple[UUID, date, int, str], list[int]], now: datetime) -> None:
    """Add deal counts, volumes and earnings to the dashboard read model."""
    upsert_add(
        IBDailyActivity,
        ("ib", "day", "level", "currency"),
        ("deals", "volume", "earned"),
        ((i, d, lv, c, n, v, e) for (i, d, lv, c), (n, v, e) in daily.items()),
        sets=(("updated_at", now),),
    )


def accrue_deals(
    deals: Sequence[ClosedDeal], *, facts: FactsProvider | None = None
) -> AccrualReport:
    """Commission a batch of closed deals, once each, in one transaction (see module doc)."""
    with transaction.atomic():
        return _Batch(deals, facts or policy_facts).run()


def evaluate_cpa(
    client_ids: Sequence[UUID], *, facts: FactsProvider | None = None
) -> AccrualReport:
    """Accrue the CPA of clients who qualify now (called when a first deposit lands: a
    ``deposit``-mode CPA does not wait for a deal). Idempotent: one CPA per client."""
    with transaction.atomic():
        batch = _Batch([], facts or policy_facts)
        return batch.run_cpa(list(client_ids))


# ---------------------------------------------------------------------------- state machine


def _locked(ids: Sequence[UUID | str]) -> list[Accrual]:
    rows = list(Accrual.objects.select_for_update().filter(pk__in=list(ids)).order_by("pk"))
    if len(rows) != len(set(map(str, ids))):
        raise NotFound("Some accruals do not exist.", code="accrual_not_found", field="ids")
    return rows


def transition(
    ids: Sequence[UUID | str], to_state: str, *, by: Any, reason: str = ""
) -> list[Accrual]:
    """Move accruals to ``to_state`` along ``TRANSITIONS``; all or none. Audited.

    Cancelling needs a reason and reverses the accrual's ledger posting. A holdback part
    cannot become payable before its release date.
    """
    actor = staff_actor(by, Role.PARTNER_MANAGER, Role.FINANCE)
    if to_state not in TRANSITIONS:
        raise ValidationError(f"Unknown state {to_state!r}.", code="invalid", field="to_state")
    if to_state == S.PAID:
        raise ValidationError("Accruals are paid by pay_ib.", code="use_payout", field="to_state")
    if to_state == S.CANCELLED and not (reason or "").strip():
        raise ValidationError(
            "A cancellation needs a reason.", code="reason_required", field="reason"
        )
    now = clock.now()
    with transaction.atomic():
        rows = _locked(ids)
        for a in rows:
            if to_state not in TRANSITIONS[a.state]:
                raise IllegalTransition(
                    f"Accrual {a.pk} is {a.state}; it cannot become {to_state}.",
                    field="ids",
                    accrual=a.pk,
                )
            if to_state == S.PAYABLE and a.release_at is not None and a.release_at > now:
                raise IllegalTransition(
                    f"Accrual {a.pk} is held back until {a.release_at.isoformat()}.",
                    code="holdback_not_released",
                    field="ids",
                    accrual=a.pk,
                )
        per_ib: dict[UUID, list[Accrual]] = defaultdict(list)
        for a in rows:
            per_ib[a.ib_id].append(a)
            if to_state == S.CANCELLED and a.ledger_transfer_id is not None:
                _compensate(a, reason=reason, actor=actor)
        for ib_id, moved in sorted(per_ib.items(), key=lambda kv: str(kv[0])):
            audit.record(  # one entry per IB and command, naming every accrual moved
                actor=actor,
                action=f"partners.accrual_{to_state}",
                object_type="ib",
                object_id=str(ib_id),
                reason=reason,
                before={"states": {str(a.pk): a.state for a in moved}},
                after={"state": to_state, "amount": sum(a.amount for a in moved)},
            )
            for a in moved:
                a.state = to_state
                a.state_changed_at = now
        Accrual.objects.filter(pk__in=[a.pk for a in rows]).update(
            state=to_state, state_changed_at=now
        )
    return rows


def _compensate(a: Accrual, *, reason: str, actor: str) -> None:
    """Take a cancelled accrual's amount back out of the IB's payable (a linked compensating
    transfer: one batch transfer carries many accruals, so it is not reversed whole)."""
    expense = ledger.system_account("ib_commission_expense", a.currency).id
    payable = ledger.open_account(OwnerType.IB, str(a.ib_id), a.currency, Bucket.PAYABLE).id
    ledger.transfer(
        f"ibc-cancel:{a.pk}",
        debit_account=payable if a.amount > 0 else expense,
        credit_account=expense if a.amount > 0 else payable,
        amount=abs(a.amount),
        currency=a.currency,
        kind="ib_commission_cancel",
        metadata={"accrual": str(a.pk), "compensates": str(a.ledger_transfer_id)},
        actor=actor,
        reason=reason,
    )


def approve(ids: Sequence[UUID | str], *, by: Any) -> list[Accrual]:
    """accrued → approved."""
    return transition(ids, S.APPROVED, by=by)


def make_payable(ids: Sequence[UUID | str], *, by: Any) -> list[Accrual]:
    """approved → payable (a holdback part only after its release date)."""
    return transition(ids, S.PAYABLE, by=by)


def cancel(ids: Sequence[UUID | str], *, by: Any, reason: str) -> list[Accrual]:
    """Cancel accruals not yet paid; their ledger postings are reversed."""
    return transition(ids, S.CANCELLED, by=by, reason=reason)


def pay_ib(ib_id: UUID | str, *, by: Any, request_key: str, currency: str | None = None) -> Payout:
    """Pay an IB's payable accruals into its wallet (IB payable → IB cash). Idempotent on
    ``request_key``; audited; emits ``commission.paid``."""
    actor = staff_actor(by, Role.FINANCE)
    if not request_key:
        raise ValidationError("A request key is required.", code="required", field="request_key")
    with transaction.atomic():
        existing = Payout.objects.filter(request_key=request_key).first()
        if existing is not None:
            return existing
        ib = hierarchy.get_ib(ib_id)
        code = currency or ib.currency
        rows = list(
            Accrual.objects.select_for_update()
            .filter(ib=ib, state=S.PAYABLE, currency=code)
            .order_by("pk")
        )
        total = sum(a.amount for a in rows)
        if total <= 0:
            raise ValidationError(
                "Nothing is payable to this IB.", code="nothing_payable", field="ib_id"
            )
        payout = Payout(
            id=new_id(),
            ib=ib,
            currency=code,
            amount=total,
            request_key=request_key,
            paid_by=actor,
            paid_at=clock.now(),
        )
        result = ledger.transfer(
            f"ib-payout:{payout.id}",
            debit_account=ledger.open_account(OwnerType.IB, str(ib.pk), code, Bucket.PAYABLE).id,
            credit_account=ledger.open_account(OwnerType.IB, str(ib.pk), code, Bucket.CASH).id,
            amount=total,
            currency=code,
            kind="ib_payout",
            metadata={"payout": str(payout.id), "accruals": len(rows)},
            actor=actor,
        )
        payout.ledger_transfer_id = result.transfer_id
        payout.save(force_insert=True)
        Accrual.objects.filter(pk__in=[a.pk for a in rows]).update(
            state=S.PAID, payout=payout, state_changed_at=payout.paid_at
        )
        audit.record(
            actor=actor,
            action="partners.payout",
            object_type="ib",
            object_id=str(ib.pk),
            after={
                "payout": str(payout.id),
                "amount": total,
                "currency": code,
                "accruals": len(rows),
            },
        )
        emit(
            CommissionPaid(
                payout_id=str(payout.id),
                ib_id=str(ib.pk),
                amount=total,
                currency=code,
                accruals=len(rows),
                ledger_transfer_id=str(result.transfer_id),
            )
        )
    return payout


def adjust(
    ib_id: UUID | str,
    amount: int,
    *,
    by: Any,
    reason: str,
    request_key: str,
    currency: str | None = None,
    adjusts: UUID | str | None = None,
) -> Accrual:
    """A manual adjustment: a signed, reasoned, audited compensating accrual posted to the
    ledger (expense ↔ IB payable); the IB sees it with its reason. Idempotent on
    ``request_key``."""
    actor = staff_actor(by, Role.PARTNER_MANAGER)
    if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
        raise ValidationError(
            "An adjustment is a non-zero integer of minor units.", code="invalid", field="amount"
        )
    if not (reason or "").strip():
        raise ValidationError(
            "An adjustment needs a reason.", code="reason_required", field="reason"
        )
    source_key = f"adj:{request_key}"
    with transaction.atomic():
        existing = Accrual.objects.filter(source_key=source_key).first()
        if existing is not None:
            return existing
        ib = hierarchy.get_ib(ib_id)
        code = currency or ib.currency
        original = Accrual.objects.filter(pk=adjusts).first() if adjusts else None
        if adjusts and original is None:
            raise NotFound("No such accrual.", code="accrual_not_found", field="adjusts")
        expense = ledger.system_account("ib_commission_expense", code).id
        payable = ledger.open_account(OwnerType.IB, str(ib.pk), code, Bucket.PAYABLE).id
        now = clock.now()
        accrual = Accrual(
            id=new_id(),
            source_key=source_key,
            kind=AccrualKind.ADJUSTMENT,
            ib=ib,
            level=0,
            client_id=original.client_id if original else None,
            currency=code,
            amount=amount,
            computation={
                "adjustment": amount,
                "reason": reason,
                "adjusts": str(original.pk) if original else None,
            },
            state=S.ACCRUED,
            occurred_at=now,
            accrued_at=now,
            state_changed_at=now,
            adjusts=original,
            reason=reason,
            actor=actor,
        )
        result = ledger.transfer(
            accrual_key(source_key, ib.pk, None, 0, "main"),
            debit_account=expense if amount > 0 else payable,
            credit_account=payable if amount > 0 else expense,
            amount=abs(amount),
            currency=code,
            kind="ib_commission_adjustment",
            metadata={"accrual": str(accrual.id)},
            actor=actor,
            reason=reason,
        )
        accrual.ledger_transfer_id = result.transfer_id
        accrual.save(force_insert=True)
        _bump_daily({(ib.pk, now.date(), 0, code): [0, 0, amount]}, now)
        audit.record(
            actor=actor,
            action="partners.adjustment",
            object_type="ib",
            object_id=str(ib.pk),
            reason=reason,
            after={
                "accrual": str(accrual.id),
                "amount": amount,
                "currency": code,
                "adjusts": str(original.pk) if original else None,
            },
        )
        emit(_accrued_event(accrual))
    return accrual
