"""The accrual engine and the commission state machine.

``accrue_deals`` turns a batch of closed deals into accruals in one transaction: each deal is
recorded once (``DealRecord``, keyed ``server:deal``; a deal already recorded is skipped, so a
rerun or a redelivery adds nothing), commissioned under the plan version valid at its close
time, split between the direct IB and its uplines (accruals unique on deal, IB, plan version,
level and part), and posted to the ledger as one transfer per currency for the batch
(``ib_commission_expense`` → each IB's ``payable`` bucket). A deal that earns nothing leaves an
``Exclusion`` naming the rule. The read models (``IBDailyActivity``) and the counters behind
tiers and CPA are updated, and one ``commissions.accrued`` event written, in the same
transaction.

The per-deal path is dictionary look-ups and integer arithmetic over what the batch loaded
once (``_Plan``: a plan version compiled with its filter verdicts per symbol, group and
client; ``_Batch.chain``: an IB's upline with its status); rows are plain tuples written by
``COPY`` (``copy_rows``). A deal accrual's working is not stored: ``working`` derives it.

States: accrued → approved → payable → paid (``TRANSITIONS``); accrued, approved or payable
may be cancelled (a ledger reversal). ``pay_ib`` moves payable accruals to the IB's wallet;
``adjust`` is the only manual change: a reasoned, audited compensating accrual the IB sees.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from fractions import Fraction
from functools import partial
from typing import Any
from uuid import UUID

import psycopg
from django.db import connection, transaction
from django.db.models import Field, JSONField, Model

from brokerdesk.core import audit, clock
from brokerdesk.core.errors import (
    DomainError,
    IllegalTransition,
    NotFound,
    ValidationError,
)
from brokerdesk.core.events import emit
from brokerdesk.core.ids import new_id
from brokerdesk.ledger import services as ledger
from brokerdesk.ledger.errors import AccountNotFound
from brokerdesk.ledger.models import Bucket, OwnerType
from brokerdesk.partners import hierarchy, rules
from brokerdesk.partners.deals import ClosedDeal, closed_deal_of, deal_extras
from brokerdesk.partners.events import CommissionAccrued, CommissionPaid, CommissionsAccrued
from brokerdesk.partners.hierarchy import any_of, array_literal
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


class _Ids:
    """UUIDv7 ids for one batch's rows: one ``new_id()``'s time, counter and upper random
    bits, then a 32-bit count (time-ordered and consecutive: a batch is an id range)."""

    def __init__(self) -> None:
        h = f"{new_id().int:032x}"
        self.prefix = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:24]}"
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"{self.prefix}{self.n:08x}"

    def text(self, n: int) -> str:
        """The batch's ``n``-th id as text."""
        return f"{self.prefix}{n:08x}"


class _Plan:
    """One plan version compiled for the batch: its parsed rules and the verdicts that do not
    depend on the deal (per symbol, account group and client), computed once each."""

    def __init__(self, version: PlanVersion, plan_rules: rules.PlanRules) -> None:
        self.version = version
        self.id = str(version.pk)
        self.rules = plan_rules
        self.currency = version.plan.currency
        self.deal_components = any(c.type != "cpa" for c in plan_rules.components)
        self.cpa = plan_rules.cpa
        self.holdback_bps = plan_rules.holdback_bps
        self.holdback = timedelta(days=plan_rules.holdback_days)
        self.symbols: dict[str, tuple[tuple[str, str] | None, str]] = {}
        self.groups: dict[str, tuple[str, str] | None] = {}
        self.clients: dict[UUID, tuple[str, str] | None] = {}

    def verdict(
        self, deal: ClosedDeal, client_id: UUID, facts: rules.ClientFacts
    ) -> tuple[tuple[str, str] | None, str]:
        """(the first filter the deal breaks or None, the deal's symbol group) — the order of
        ``rules.check_filters``."""
        filters = self.rules.filters
        sym = self.symbols.get(deal.symbol)
        if sym is None:
            sym = self.symbols[deal.symbol] = (
                rules.check_symbol(deal.symbol, filters),
                rules.symbol_group(deal.symbol, self.rules.symbol_groups),
            )
        if sym[0] is not None:
            return sym
        if deal.group in self.groups:
            failed = self.groups[deal.group]
        else:
            failed = self.groups[deal.group] = rules.check_group(deal.group, filters)
        if failed is None:
            if client_id in self.clients:
                failed = self.clients[client_id]
            else:
                failed = self.clients[client_id] = rules.check_client(filters, facts)
        if failed is None:
            failed = rules.check_deal(deal, filters)
        return failed, sym[1]


class _Batch:
    def __init__(self, deals: Sequence[ClosedDeal], facts: FactsProvider) -> None:
        self.deals = deals
        self.facts_provider = facts
        self.now = clock.now()
        # timestamps go into the rows as ISO text on PostgreSQL (formatted once per deal or
        # batch rather than by COPY per row and column); the other engines take datetimes
        self.stamp: Callable[[datetime | None], Any] = (
            _iso if connection.vendor == "postgresql" else _same
        )
        self.now_value = self.stamp(self.now)
        self.ids = _Ids()
        self.uuids: dict[UUID, str] = {}
        self.records: list[tuple[Any, ...]] = []
        self.accruals: list[tuple[Any, ...]] = []  # _ACCRUAL_COLUMNS but the transfer id
        self.exclusions: list[tuple[Any, ...]] = []
        self.cpa_computations: dict[str, str] = {}
        self.sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.sources: dict[str, set[str]] = defaultdict(set)
        self.counts: dict[str, int] = defaultdict(int)  # accrual rows per currency
        self.period_volume: dict[tuple[UUID, date], int] = {}
        self.period_delta: dict[tuple[UUID, date], int] = defaultdict(int)
        self.client_delta: dict[UUID, list[int]] = defaultdict(lambda: [0, 0])
        self.daily: dict[tuple[str, date, int, str], list[int]] = defaultdict(lambda: [0, 0, 0])
        self.cpa_candidates: dict[UUID, tuple[UUID, PlanVersion, datetime]] = {}
        self.accounts: dict[str, UUID] = {}
        self.ib_currency: dict[UUID, str] = {}
        self.plans: dict[UUID, _Plan] = {}
        self.chains: dict[UUID, list[tuple[UUID, str, bool]]] = {}
        self.plan_index: dict[UUID, tuple[list[datetime], list[_Plan | None]]] = {}

    def u(self, value: UUID) -> str:
        """A UUID as text (cached: the same IBs, clients and versions recur)."""
        text = self.uuids.get(value)
        if text is None:
            text = self.uuids[value] = str(value)
        return text

    def chain(
        self, ib_id: UUID, uplines: dict[UUID, list[hierarchy.TreeNode]], status: dict[UUID, str]
    ) -> list[tuple[UUID, str, bool]]:
        """The IB and its uplines (level 0, 1, …) as (id, id as text, active), once per IB."""
        found = self.chains.get(ib_id)
        if found is None:
            found = self.chains[ib_id] = [
                (i, self.u(i), status.get(i) == IBStatus.ACTIVE)
                for i in (ib_id, *(n.ib_id for n in uplines[ib_id]))
            ]
        return found

    def compiled(self, book: PlanBook, version: PlanVersion) -> _Plan:
        """The compiled form of a version (once per batch)."""
        found = self.plans.get(version.pk)
        if found is None:
            found = self.plans[version.pk] = _Plan(version, book.rules(version))
        return found

    def plan_at(self, book: PlanBook, ib_id: UUID, when: datetime) -> _Plan | None:
        """``book.version_for`` through a per-IB index of the times its answer changes (an
        assignment's or a version's start): a bisection, or one comparison for the latest."""
        index = self.plan_index.get(ib_id)
        if index is None:
            starts = sorted(
                {start for start, _ in book.assignments.get(ib_id, [])}
                | {
                    v.valid_from
                    for _, plan_id in book.assignments.get(ib_id, [])
                    for v in book.versions.get(plan_id, [])
                }
            )
            found = [book.version_for(ib_id, start) for start in starts]
            index = self.plan_index[ib_id] = (
                starts,
                [self.compiled(book, v) if v is not None else None for v in found],
            )
        starts, compiled = index
        if starts and when >= starts[-1]:
            return compiled[-1]
        i = bisect.bisect_right(starts, when)
        return compiled[i - 1] if i else None

    def exclude(
        self,
        source_key: str,
        deal_key: str | None,
        ib_id: UUID,
        level: int,
        client_id: UUID | None,
        version_id: str | None,
        rule: str,
        detail: str,
        when: datetime,
    ) -> None:
        self.exclusions.append(
            (
                self.ids(),
                source_key,
                deal_key,
                self.u(ib_id),
                level,
                self.u(client_id) if client_id else None,
                version_id,
                rule,
                detail,
                self.stamp(when),
                self.now_value,
            )
        )

    def run(self) -> AccrualReport:
        report = AccrualReport(deals=len(self.deals))
        unique: dict[str, ClosedDeal] = {}
        for d in self.deals:
            unique.setdefault(d.key, d)
        done = set(any_of(DealRecord.objects.all(), "key", unique).values_list("key", flat=True))
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
            any_of(Attribution.objects.all(), "client_id", client_ids).values_list(
                "client_id", "ib_id"
            )
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
        for ib_id, period, volume in any_of(
            IBPeriodVolume.objects.filter(period__in={p[1] for p in periods}),
            "ib",
            {p[0] for p in periods},
        ).values_list("ib_id", "period", "volume"):
            if (ib_id, period) in self.period_volume:
                self.period_volume[(ib_id, period)] = volume

        self._deals(fresh, client_of, attributed, book, uplines, status, facts)
        self._cpa(book, uplines, status)
        self._write()
        report.accruals = len(self.accruals)
        report.exclusions = len(self.exclusions)
        report.amount = {c: sum(per_ib.values()) for c, per_ib in self.sums.items()}
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
        report.amount = {c: sum(per_ib.values()) for c, per_ib in self.sums.items()}
        return report

    def _load_ibs(self, ids: set[UUID]) -> dict[UUID, str]:
        status: dict[UUID, str] = {}
        for i, st, cur in any_of(IB.objects.all(), "id", ids).values_list(
            "id", "status", "currency"
        ):
            status[i] = st
            self.ib_currency[i] = cur
        return status

    def _deals(
        self,
        fresh: list[ClosedDeal],
        client_of: dict[str, UUID | None],
        attributed: dict[UUID, UUID],
        book: PlanBook,
        uplines: dict[UUID, list[hierarchy.TreeNode]],
        status: dict[UUID, str],
        facts: dict[UUID, rules.ClientFacts],
    ) -> None:
        """The per-deal path: dictionary look-ups and integer arithmetic (module doc)."""
        active = IBStatus.ACTIVE
        u = self.u
        daily = self.daily
        period_volume = self.period_volume
        period_delta = self.period_delta
        client_delta = self.client_delta
        records = self.records
        ib_currency = self.ib_currency
        stamp = self.stamp
        now = self.now_value
        periods: dict[tuple[int, int], date] = {}
        extras_none = json.dumps({})
        for deal in fresh:
            key = deal.key
            when = deal.closed_at
            client_id = client_of[key]
            ib_id = attributed.get(client_id) if client_id else None
            tier_volume: int | None = None
            try:
                if ib_id is None or client_id is None:
                    continue
                day = when.date()
                row = daily[(u(ib_id), day, 0, ib_currency[ib_id])]
                row[0] += 1
                row[1] += deal.volume
                plan = self.plan_at(book, ib_id, when)
                if plan is None:
                    self.exclude(
                        key,
                        key,
                        ib_id,
                        0,
                        client_id,
                        None,
                        "no_plan",
                        "the IB had no commission plan when the deal closed",
                        when,
                    )
                    continue
                if status.get(ib_id) != active:
                    self.exclude(
                        key,
                        key,
                        ib_id,
                        0,
                        client_id,
                        plan.id,
                        "ib_suspended",
                        "the IB was suspended",
                        when,
                    )
                    continue
                currency = plan.currency
                if deal.currency and deal.currency != currency:
                    self.exclude(
                        key,
                        key,
                        ib_id,
                        0,
                        client_id,
                        plan.id,
                        "currency_mismatch",
                        f"deal in {deal.currency}, plan pays in {currency}",
                        when,
                    )
                    continue
                failed, group = plan.verdict(deal, client_id, facts[client_id])
                if failed is not None:
                    self.exclude(key, key, ib_id, 0, client_id, plan.id, *failed, when)
                    continue
                month = periods.get((when.year, when.month))
                if month is None:
                    month = periods[(when.year, when.month)] = rules.period_start(when)
                pk = (ib_id, month)
                before = period_volume[pk]
                period_volume[pk] = before + deal.volume
                period_delta[pk] += deal.volume
                counts = client_delta[client_id]
                counts[0] += deal.volume
                counts[1] += 1
                if plan.cpa is not None:
                    self.cpa_candidates.setdefault(client_id, (ib_id, plan.version, when))
                if not plan.deal_components:
                    continue
                numerator, _ = rules.pool_numerator(deal, plan.rules, group, before)
                if numerator < rules.POOL_DEN:
                    pool = rules.compute_pool(deal, plan.rules, before)
                    self.exclude(
                        key,
                        key,
                        ib_id,
                        0,
                        client_id,
                        plan.id,
                        "zero_commission",
                        f"the plan's components produce nothing: {list(pool.parts)}",
                        when,
                    )
                    continue
                tier_volume = before
                self._split(
                    kind=AccrualKind.DEAL,
                    source_key=key,
                    deal_key=key,
                    ib_id=ib_id,
                    client_id=client_id,
                    plan=plan,
                    numerator=numerator,
                    volume=deal.volume,
                    when=when,
                    chain=self.chain(ib_id, uplines, status),
                    computation=_EMPTY_JSON,
                )
            finally:
                records.append(
                    (
                        key,
                        deal.server,
                        deal.login,
                        deal.deal,
                        u(client_id) if client_id else None,
                        u(ib_id) if ib_id else None,
                        stamp(when),
                        deal.symbol,
                        deal.volume,
                        deal.profit,
                        deal.commission,
                        deal.swap,
                        deal.currency,
                        deal.group,
                        deal.position_id,
                        stamp(deal.opened_at),
                        extras_none if not (extras := deal_extras(deal)) else json.dumps(extras),
                        now,
                        tier_volume,
                    )
                )

    def _split(
        self,
        *,
        kind: str,
        source_key: str,
        deal_key: str | None,
        ib_id: UUID,
        client_id: UUID,
        plan: _Plan,
        numerator: int,
        volume: int,
        when: datetime,
        chain: list[tuple[UUID, str, bool]],
        computation: str | Callable[[int, int, int, int, str, int], str],
    ) -> None:
        """Share the pool (``numerator / POOL_DEN``) between the direct IB and its uplines;
        each share becomes a main part and a holdback part (when the plan holds back)."""
        currency = plan.currency
        client = self.u(client_id)
        version = plan.id
        hold_bps = plan.holdback_bps
        release = self.stamp(when + plan.holdback) if hold_bps else None
        day = when.date()
        now = self.now_value
        at = self.stamp(when)
        accrued = S.ACCRUED
        sums = self.sums[currency]
        self.sources[currency].add(source_key)
        daily = self.daily
        append = self.accruals.append
        ids = self.ids
        fixed, make = (computation, None) if isinstance(computation, str) else ("", computation)
        rows = 0
        for level, bps, amount, remainder in rules.split_numerator(
            numerator, plan.rules.overrides, len(chain) - 1
        ):
            who, earner, active = chain[level]
            if not active:
                self.exclude(
                    source_key,
                    deal_key,
                    who,
                    level,
                    client_id,
                    version,
                    "ib_suspended",
                    "the IB was suspended",
                    when,
                )
                continue
            if amount <= 0:
                continue
            row = daily[(earner, day, level, currency)]
            if level:
                row[0] += 1
                row[1] += volume
            held = amount * hold_bps // rules.BPS
            main_part = amount - held
            if main_part > 0:
                append(
                    (
                        ids(),
                        source_key,
                        kind,
                        "main",
                        earner,
                        level,
                        deal_key,
                        client,
                        version,
                        currency,
                        main_part,
                        remainder,
                        volume,
                        fixed
                        if make is None
                        else make(level, bps, amount, remainder, "main", main_part),
                        accrued,
                        None,
                        at,
                        now,
                        now,
                    )
                )
                rows += 1
            if held > 0:
                append(
                    (
                        ids(),
                        source_key,
                        kind,
                        "holdback",
                        earner,
                        level,
                        deal_key,
                        client,
                        version,
                        currency,
                        held,
                        0,
                        0,
                        fixed
                        if make is None
                        else make(level, bps, amount, remainder, "holdback", held),
                        accrued,
                        release,
                        at,
                        now,
                        now,
                    )
                )
                rows += 1
            row[2] += amount
            sums[earner] += amount
        self.counts[currency] += rows

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
            plan = self.compiled(book, version)
            cpa = plan.cpa
            assert cpa is not None
            volume = volumes.get(client_id, 0) + self.client_delta[client_id][0]
            due, why = rules.cpa_due(
                cpa, first_deposit=funding.get(client_id), client_volume=volume
            )
            if not due:
                continue
            line = uplines[ib_id]
            cpa_amount = cpa.amount
            shares = rules.split_levels(Fraction(cpa_amount), plan.rules.overrides, len(line))
            base = {
                "cpa": {"amount": cpa.amount, "mode": cpa.mode, "qualified": why},
                "plan": version.plan.code,
                "version": version.number,
                "shares": [{"level": s.level, "bps": s.bps, "amount": s.amount} for s in shares],
            }

            def working(
                level: int,
                bps: int,
                amount: int,
                remainder: int,
                part: str,
                value: int,
                base: dict[str, Any] = base,
                hold: int = plan.holdback_bps,
                pool: int = cpa_amount,
            ) -> str:
                return json.dumps(
                    {
                        **base,
                        "level": level,
                        "bps": bps,
                        "share_exact": rules.frac(Fraction(pool) * bps / rules.BPS),
                        "amount": amount,
                        "remainder_ppm": remainder,
                        "part": part,
                        "holdback_bps": hold,
                        "part_amount": value,
                    }
                )

            self._split(
                kind=AccrualKind.CPA,
                source_key=f"cpa:{client_id}",
                deal_key=None,
                ib_id=ib_id,
                client_id=client_id,
                plan=plan,
                numerator=cpa.amount * rules.POOL_DEN,
                volume=0,
                when=when,
                chain=self.chain(ib_id, uplines, status),
                computation=working,
            )

    def _requests(self) -> list[list[ledger.TransferRequest]]:
        """One balanced transfer per currency for the whole batch: commission expense → each
        IB's payable (its sum); the accrual rows keep the per-deal detail and point to it."""
        requests: list[list[ledger.TransferRequest]] = []
        for currency, per_ib in sorted(self.sums.items()):
            payable = self._payables(sorted(per_ib), currency)
            # the batch's identity: the deals (and CPA clients) it paid, each paid only once
            digest = hashlib.sha256("\n".join(sorted(self.sources[currency])).encode())
            requests.append(
                [
                    ledger.TransferRequest(
                        idempotency_key=f"ibc-batch:{currency}:{digest.hexdigest()}",
                        kind="ib_commission",
                        currency=currency,
                        legs=(
                            ledger.debit(self._expense(currency), sum(per_ib.values())),
                            *(
                                ledger.credit(payable[ib], amount)
                                for ib, amount in sorted(per_ib.items(), key=lambda kv: str(kv[0]))
                            ),
                        ),
                        metadata={
                            "accruals": self.counts[currency],
                            "deals": len(self.records),
                        },
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
        posted: dict[str, str] = {}
        for (request,), (outcome,) in zip(requests, outcomes, strict=True):
            if isinstance(outcome, DomainError):
                raise outcome
            posted[request.currency] = str(outcome.transfer_id)
        copy_rows(DealRecord, _DEAL_COLUMNS, self.records)
        copy_rows(
            Accrual,
            _ACCRUAL_COLUMNS,
            ((*a, posted[a[9]], "", "system") for a in self.accruals),
        )
        copy_rows(Exclusion, _EXCLUSION_COLUMNS, self.exclusions)
        _bump_period_volume(self.period_delta)
        _bump_client_volume(self.client_delta)
        _bump_daily(self.daily, self.now)
        if posted:
            emit(
                CommissionsAccrued(
                    transfers=dict(sorted(posted.items())),
                    first_id=self.ids.text(1),
                    last_id=self.ids.text(self.ids.n),
                    accruals=len(self.accruals),
                    deals=len(self.records),
                    amounts={c: sum(per_ib.values()) for c, per_ib in sorted(self.sums.items())},
                )
            )

    def _payables(self, ib_ids: list[str], currency: str) -> dict[str, UUID]:
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

    def _payable(self, ib_id: str, currency: str) -> UUID:
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


def _iso(value: datetime | None) -> str | None:
    """A timestamp as ISO 8601 text (what PostgreSQL's COPY reads)."""
    return None if value is None else value.isoformat()


def _same(value: datetime | None) -> datetime | None:
    return value


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


_DEAL_COLUMNS = (
    "key", "server", "login", "deal", "client_id", "ib", "closed_at", "symbol", "volume",
    "profit", "commission", "swap", "currency", "group", "position_id", "opened_at", "payload",
    "processed_at", "tier_volume",
)  # fmt: skip
_ACCRUAL_COLUMNS = (
    "id", "source_key", "kind", "part", "ib", "level", "deal", "client_id", "plan_version",
    "currency", "amount", "remainder_ppm", "volume", "computation", "state", "release_at",
    "occurred_at", "accrued_at", "state_changed_at", "ledger_transfer_id", "reason", "actor",
)  # fmt: skip
_EXCLUSION_COLUMNS = (
    "id", "source_key", "deal", "ib", "level", "client_id", "plan_version", "rule", "detail",
    "occurred_at", "recorded_at",
)  # fmt: skip
_EMPTY_JSON = "{}"


def _fields(model: type[Model], names: Sequence[str]) -> list[Field[Any, Any]]:
    out = []
    for name in names:
        found = model._meta.get_field(name)
        assert isinstance(found, Field)
        out.append(found)
    return out


def copy_rows(model: type[Model], names: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Insert rows of plain values (UUIDs as text, JSON as text) into ``names`` columns:
    ``COPY`` on PostgreSQL, ``executemany`` elsewhere (values prepared by the fields)."""
    fields = _fields(model, names)
    table = model._meta.db_table
    qn = connection.ops.quote_name
    column_list = ", ".join(qn(str(f.column)) for f in fields)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {qn(table)} ({column_list}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        preps = [
            None if isinstance(f, JSONField) else partial(f.get_db_prep_save, connection=connection)
            for f in fields
        ]
        prepared = [
            tuple(v if p is None or v is None else p(v) for p, v in zip(preps, row, strict=True))
            for row in rows
        ]
        if prepared:
            marks = ", ".join(["%s"] * len(fields))
            cursor.executemany(
                f"INSERT INTO {qn(table)} ({column_list}) VALUES ({marks})",  # noqa: S608
                prepared,
            )


def upsert_add(
    model: type[Model],
    keys: Sequence[str],
    adds: Sequence[str],
    rows: Iterable[tuple[Any, ...]],
    sets: Sequence[tuple[str, Any]] = (),
) -> int:
    """``INSERT … ON CONFLICT (keys) DO UPDATE SET col = col + excluded.col`` (SQLite and
    PostgreSQL), rows sorted by key so concurrent batches lock in the same order. Each row is
    the key values followed by the amounts to add; ``sets`` are plain assignments. On
    PostgreSQL one statement over ``unnest`` of one array per column, sorted by the server."""
    ordered = list(rows)
    if not ordered:
        return 0
    fields = _fields(model, (*keys, *adds))
    set_fields = _fields(model, [n for n, _ in sets])
    columns: list[str] = [str(f.column) for f in (*fields, *set_fields)]
    table = model._meta.db_table
    qn = connection.ops.quote_name
    updates = [
        f"{qn(c)} = {qn(table)}.{qn(c)} + excluded.{qn(c)}"
        for c in columns[len(keys) : len(fields)]
    ]
    updates += [f"{qn(c)} = excluded.{qn(c)}" for c in columns[len(fields) :]]
    conflict = ", ".join(qn(c) for c in columns[: len(keys)])
    head = f"INSERT INTO {qn(table)} ({', '.join(qn(c) for c in columns)}) "
    tail = f" ON CONFLICT ({conflict}) DO UPDATE SET {', '.join(updates)}"
    if connection.vendor == "postgresql":
        arrays: list[Any] = [array_literal([row[i] for row in ordered]) for i in range(len(fields))]
        types = [str(f.db_type(connection)).split("(")[0] for f in (*fields, *set_fields)]
        unnest = ", ".join(f"%s::{t}[]" for t in types[: len(fields)])
        scalars = "".join(f", %s::{t}" for t in types[len(fields) :])
        order = ", ".join(str(i + 1) for i in range(len(keys)))
        connection.ensure_connection()
        # a server-binding cursor: each column travels as one array parameter (Django's
        # client-side binding would quote every element into the statement's text)
        with psycopg.Cursor(connection.connection) as raw:
            raw.execute(
                f"{head}SELECT u.*{scalars} FROM unnest({unnest}) AS u "  # noqa: S608
                f"ORDER BY {order}{tail}",
                [*(value for _, value in sets), *arrays],  # in the order of the text
            )
        return len(ordered)
    with connection.cursor() as cursor:
        ordered.sort(key=lambda r: tuple(str(v) for v in r[: len(keys)]))
        placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
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
                f"{head}VALUES {', '.join([placeholders] * len(chunk))}{tail}",
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


def _bump_daily(daily: Mapping[tuple[Any, date, int, str], list[int]], now: datetime) -> None:
    """Add deal counts, volumes and earnings to the dashboard read model."""
    upsert_add(
        IBDailyActivity,
        ("ib", "day", "level", "currency"),
        ("deals", "volume", "earned"),
        ((i, d, lv, c, n, v, e) for (i, d, lv, c), (n, v, e) in daily.items()),
        sets=(("updated_at", now),),
    )


def working(a: Accrual) -> dict[str, Any]:
    """The computation behind an accrual's amount. A deal accrual stores none: it is derived
    here, exactly, from its deal (``DealRecord``, with the tier volume it was paid at), its
    plan version's rules and its level — the same integers the engine paid."""
    if a.computation or a.kind != AccrualKind.DEAL or a.deal is None or a.plan_version is None:
        return dict(a.computation)
    record = a.deal
    version = a.plan_version
    plan_rules = rules.parse_rules(version.rules)
    deal = closed_deal_of(record)
    before = record.tier_volume or 0
    pool = rules.compute_pool(deal, plan_rules, before)
    shares = rules.split_levels(pool.exact, plan_rules.overrides, len(plan_rules.overrides))
    share = shares[a.level]
    bps = plan_rules.holdback_bps
    return {
        "pool": {
            "parts": list(pool.parts),
            "multiplier_bps": pool.multiplier_bps,
            "period_volume_before": before,
            "deal_currency": deal.currency or f"{a.currency} (assumed: none sent)",
            "exact": rules.frac(pool.exact),
            "amount": pool.amount,
        },
        "plan": version.plan.code,
        "version": version.number,
        "shares": [{"level": s.level, "bps": s.bps, "amount": s.amount} for s in shares],
        "level": share.level,
        "bps": share.bps,
        "share_exact": rules.frac(share.exact),
        "amount": share.amount,
        "remainder_ppm": share.remainder_ppm,
        "part": a.part,
        "holdback_bps": bps,
        "part_amount": a.amount,
    }


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
