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
client; ``_Batch.chain``: an IB's upline with its status); rows are plain tuples sent by
``COPY`` while the batch is computed (``RowStreams``: the server inserts as the engine goes).
A deal accrual's working is not stored: ``working`` derives it. A share's holdback rides on
its accrual (``held``) until ``release_holdbacks`` (or a correction, ``split_held``) moves it
to a ``holdback`` accrual of its own.

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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from fractions import Fraction
from functools import partial
from typing import Any
from uuid import UUID

import psycopg
from django.db import connection, transaction
from django.db.models import Field, JSONField, Model
from psycopg.copy import QueuedLibpqWriter

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
        self.clients: dict[str, tuple[str, str] | None] = {}

    def verdict(
        self, deal: ClosedDeal, client_id: str, facts: rules.ClientFacts
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


def _override_levels(book: PlanBook) -> int:
    """The deepest upline any of the book's versions pays."""
    return max(
        (book.rules(v).override_levels for vs in book.versions.values() for v in vs), default=0
    )


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
        self.records = RowStream(DealRecord, _DEAL_COLUMNS)
        self.accruals = RowStream(Accrual, _ACCRUAL_COLUMNS)
        # the batch's ledger transfer per currency, its id chosen first: accrual rows carry it
        # and are sent to the database while the batch is still being computed
        self.transfer_ids: dict[str, str] = {}
        self.exclusions = RowStream(Exclusion, _EXCLUSION_COLUMNS)
        self.streams = RowStreams(self.accruals, self.records, self.exclusions)
        self.sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.sources: dict[str, set[str]] = defaultdict(set)
        self.counts: dict[str, int] = defaultdict(int)  # accrual rows per currency
        # IBs and clients are keyed by their ids as text on the per-deal path (a str hashes
        # once; a UUID hashes in Python at every look-up)
        self.period_volume: dict[tuple[str, date], int] = {}
        self.period_delta: dict[tuple[str, date], int] = defaultdict(int)
        self.client_delta: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self.daily: dict[tuple[str, date, int, str], list[int]] = defaultdict(lambda: [0, 0, 0])
        self.cpa_candidates: dict[str, tuple[str, PlanVersion, datetime]] = {}
        self.accounts: dict[str, UUID] = {}
        self.ib_currency: dict[str, str] = {}
        self.plans: dict[UUID, _Plan] = {}
        self.uplines: dict[str, list[str]] = {}
        self.chains: dict[str, list[tuple[str, bool]]] = {}
        self.plan_index: dict[str, tuple[list[datetime], list[_Plan | None]]] = {}

    def u(self, value: UUID) -> str:
        """A UUID as text (cached: the same IBs, clients and versions recur)."""
        text = self.uuids.get(value)
        if text is None:
            text = self.uuids[value] = str(value)
        return text

    def chain(self, ib_id: str, status: dict[str, str]) -> list[tuple[str, bool]]:
        """The IB and its uplines (level 0, 1, …) as (id, active), once per IB."""
        found = self.chains.get(ib_id)
        if found is None:
            found = self.chains[ib_id] = [
                (i, status.get(i) == IBStatus.ACTIVE) for i in (ib_id, *self.uplines[ib_id])
            ]
        return found

    def load_uplines(self, direct_ids: list[UUID], levels: int) -> set[UUID]:
        """The uplines of ``direct_ids`` (``levels`` deep); returns every IB involved."""
        found = hierarchy.uplines(direct_ids, levels)
        self.uplines = {self.u(i): [self.u(n.ib_id) for n in line] for i, line in found.items()}
        return set(direct_ids) | {n.ib_id for line in found.values() for n in line}

    def compiled(self, book: PlanBook, version: PlanVersion) -> _Plan:
        """The compiled form of a version (once per batch)."""
        found = self.plans.get(version.pk)
        if found is None:
            found = self.plans[version.pk] = _Plan(version, book.rules(version))
        return found

    def plan_at(self, book: PlanBook, ib_text: str, when: datetime) -> _Plan | None:
        """``book.version_for`` through a per-IB index of the times its answer changes (an
        assignment's or a version's start): a bisection, or one comparison for the latest."""
        index = self.plan_index.get(ib_text)
        if index is None:
            ib_id = UUID(ib_text)
            starts = sorted(
                {start for start, _ in book.assignments.get(ib_id, [])}
                | {
                    v.valid_from
                    for _, plan_id in book.assignments.get(ib_id, [])
                    for v in book.versions.get(plan_id, [])
                }
            )
            found = [book.version_for(ib_id, start) for start in starts]
            index = self.plan_index[ib_text] = (
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
        ib_id: str,
        level: int,
        client_id: str | None,
        version_id: str | None,
        rule: str,
        detail: str,
        at: Any,
    ) -> None:
        """Record that a deal (or share) earns nothing, and why (``at``: its stamped time)."""
        self.exclusions.append(
            (
                self.ids(),
                source_key,
                deal_key,
                ib_id,
                level,
                client_id,
                version_id,
                rule,
                detail,
                at,
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
        pairs = any_of(Attribution.objects.all(), "client_id", client_ids).values_list(
            "client_id", "ib_id"
        )
        attributed = {self.u(c): self.u(i) for c, i in pairs}
        direct_ids = sorted({UUID(i) for i in attributed.values()})
        book = PlanBook(direct_ids)
        status = self._load_ibs(self.load_uplines(direct_ids, _override_levels(book)))
        facts = self._facts(c for c in client_ids if self.u(c) in attributed)
        client_text = {k: self.u(c) if c else None for k, c in client_of.items()}
        periods = {
            (attributed[c], rules.period_start(d.closed_at))
            for d in fresh
            if (c := client_text[d.key]) in attributed
        }
        for ib_id, period in periods:
            self.period_volume[(ib_id, period)] = 0
        for ib_uuid, period, volume in any_of(
            IBPeriodVolume.objects.filter(period__in={p[1] for p in periods}),
            "ib",
            {p[0] for p in periods},
        ).values_list("ib_id", "period", "volume"):
            if (key := (self.u(ib_uuid), period)) in self.period_volume:
                self.period_volume[key] = volume

        with self.streams.streaming():
            for start in range(0, len(fresh), STREAM_CHUNK):
                if start:
                    self.streams.switch()
                chunk = fresh[start : start + STREAM_CHUNK]
                self._deals(chunk, client_text, attributed, book, status, facts)
        self._cpa(book, status)
        self._write()
        report.accruals = self.accruals.count
        report.exclusions = self.exclusions.count
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
        status = self._load_ibs(self.load_uplines(direct_ids, _override_levels(book)))
        facts = self._facts(attributed)
        for client_id, ib_id in attributed.items():
            version = book.version_for(ib_id, self.now)
            if version is None or status.get(self.u(ib_id)) != IBStatus.ACTIVE:
                continue
            plan_rules = book.rules(version)
            client = self.u(client_id)
            if plan_rules.cpa is None or rules.check_client(plan_rules.filters, facts[client]):
                continue
            self.cpa_candidates[client] = (self.u(ib_id), version, self.now)
        self._cpa(book, status)
        self._write()
        report.accruals = self.accruals.count
        report.amount = {c: sum(per_ib.values()) for c, per_ib in self.sums.items()}
        return report

    def _load_ibs(self, ids: set[UUID]) -> dict[str, str]:
        status: dict[str, str] = {}
        for i, st, cur in any_of(IB.objects.all(), "id", ids).values_list(
            "id", "status", "currency"
        ):
            text = self.u(i)
            status[text] = st
            self.ib_currency[text] = cur
        return status

    def _facts(self, client_ids: Iterable[UUID]) -> dict[str, rules.ClientFacts]:
        return {self.u(c): f for c, f in self.facts_provider(sorted(client_ids)).items()}

    def _deals(
        self,
        fresh: list[ClosedDeal],
        client_of: dict[str, str | None],
        attributed: dict[str, str],
        book: PlanBook,
        status: dict[str, str],
        facts: dict[str, rules.ClientFacts],
    ) -> None:
        """The per-deal path: dictionary look-ups and integer arithmetic (module doc)."""
        active = IBStatus.ACTIVE
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
            at = stamp(when)
            client_id = client_of[key]
            ib_id = attributed.get(client_id) if client_id else None
            tier_volume: int | None = None
            try:
                if ib_id is None or client_id is None:
                    continue
                day = when.date()
                row = daily[(ib_id, day, 0, ib_currency[ib_id])]
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
                        at,
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
                        at,
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
                        at,
                    )
                    continue
                failed, group = plan.verdict(deal, client_id, facts[client_id])
                if failed is not None:
                    self.exclude(key, key, ib_id, 0, client_id, plan.id, *failed, at)
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
                        at,
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
                    at=at,
                    chain=self.chain(ib_id, status),
                    computation=_EMPTY_JSON,
                )
            finally:
                records.append(
                    (
                        key,
                        deal.server,
                        deal.login,
                        deal.deal,
                        client_id,
                        ib_id,
                        at,
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
        ib_id: str,
        client_id: str,
        plan: _Plan,
        numerator: int,
        volume: int,
        when: datetime,
        at: Any,
        chain: list[tuple[str, bool]],
        computation: str | Callable[[int, int, int, int, str, int], str],
    ) -> None:
        """Share the pool (``numerator / POOL_DEN``) between the direct IB and its uplines;
        each share becomes one accrual: its main part, carrying the plan's holdback (``held``)
        until that is released."""
        currency = plan.currency
        client = client_id
        version = plan.id
        hold_bps = plan.holdback_bps
        release = self.stamp(when + plan.holdback) if hold_bps else None
        day = when.date()
        now = self.now_value
        accrued = S.ACCRUED
        sums = self.sums[currency]
        self.sources[currency].add(source_key)
        daily = self.daily
        append = self.accruals.append
        transfer = self.transfer_ids.get(currency) or self._transfer_id(currency)
        ids = self.ids
        fixed, make = (computation, None) if isinstance(computation, str) else ("", computation)
        rows = 0
        for level, bps, amount, remainder in rules.split_numerator(
            numerator, plan.rules.overrides, len(chain) - 1
        ):
            earner, active = chain[level]
            if not active:
                self.exclude(
                    source_key,
                    deal_key,
                    earner,
                    level,
                    client_id,
                    version,
                    "ib_suspended",
                    "the IB was suspended",
                    at,
                )
                continue
            if amount <= 0:
                continue
            row = daily[(earner, day, level, currency)]
            if level:
                row[0] += 1
                row[1] += volume
            # one row per share: the main part, with the holdback it carries until released
            held = amount * hold_bps // rules.BPS
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
                    amount - held,
                    held,
                    remainder,
                    volume,
                    fixed
                    if make is None
                    else make(level, bps, amount, remainder, "main", amount - held),
                    accrued,
                    release if held else None,
                    at,
                    now,
                    now,
                    transfer,
                    "",
                    "system",
                )
            )
            rows += 1
            row[2] += amount
            sums[earner] += amount
        self.counts[currency] += rows

    def _transfer_id(self, currency: str) -> str:
        self.transfer_ids[currency] = found = str(new_id())
        return found

    def _cpa(self, book: PlanBook, status: dict[str, str]) -> None:
        if not self.cpa_candidates:
            return
        clients = list(self.cpa_candidates)
        paid = {
            self.u(c)
            for c in Accrual.objects.filter(
                kind=AccrualKind.CPA, source_key__in=[f"cpa:{c}" for c in clients]
            ).values_list("client_id", flat=True)
            if c is not None
        }
        volumes = {
            self.u(c): v
            for c, v in ClientVolume.objects.filter(client_id__in=clients).values_list(
                "client_id", "volume"
            )
        }
        funding = {
            self.u(c): v
            for c, v in ClientFunding.objects.filter(client_id__in=clients).values_list(
                "client_id", "first_amount"
            )
        }
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
            line = self.uplines[ib_id]
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
                        "held": amount - value,
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
                at=self.stamp(when),
                chain=self.chain(ib_id, status),
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
                        transfer_id=UUID(self.transfer_ids[currency]),
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
                            "deals": self.records.count,
                        },
                    )
                ]
            )
        return requests

    def _write(self) -> None:
        requests = self._requests() if self.accruals.count else []
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
            if outcome.transfer_id != request.transfer_id:
                # the batch's key was posted before, under another id: these rows name ours
                raise DomainError(
                    "This commission batch was already posted.", code="batch_replayed"
                )
            posted[request.currency] = str(outcome.transfer_id)
        self.streams.flush()
        _bump_period_volume(self.period_delta)
        _bump_client_volume(self.client_delta)
        _bump_daily(self.daily, self.now)
        if posted:
            emit(
                CommissionsAccrued(
                    transfers=dict(sorted(posted.items())),
                    first_id=self.ids.text(1),
                    last_id=self.ids.text(self.ids.n),
                    accruals=self.accruals.count,
                    deals=self.records.count,
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
    "currency", "amount", "held", "remainder_ppm", "volume", "computation", "state", "release_at",
    "occurred_at", "accrued_at", "state_changed_at", "ledger_transfer_id", "reason", "actor",
)  # fmt: skip
_EXCLUSION_COLUMNS = (
    "id", "source_key", "deal", "ib", "level", "client_id", "plan_version", "rule", "detail",
    "occurred_at", "recorded_at",
)  # fmt: skip
_EMPTY_JSON = "{}"
# deals computed between two switches of the open COPY (RowStreams): smaller chunks leave
# fewer rows to write at the end of a batch, larger ones fewer waits for the server
STREAM_CHUNK = 5_000


def _fields(model: type[Model], names: Sequence[str]) -> list[Field[Any, Any]]:
    out = []
    for name in names:
        found = model._meta.get_field(name)
        assert isinstance(found, Field)
        out.append(found)
    return out


class RowStream:
    """Rows of one model as they are produced: sent straight into an open ``COPY`` while
    ``RowStreams`` has one open for this model, otherwise kept until then (or ``flush``)."""

    def __init__(self, model: type[Model], names: Sequence[str]) -> None:
        self.model = model
        self.names = names
        self.count = 0
        self.waiting: list[Sequence[Any]] = []
        self.send: Callable[[Sequence[Any]], None] | None = None

    def append(self, row: Sequence[Any]) -> None:
        """Add one row (values as ``copy_rows`` takes them)."""
        self.count += 1
        if self.send is None:
            self.waiting.append(row)
        else:
            self.send(row)

    def flush(self) -> None:
        """Write the rows that wait (``copy_rows``)."""
        if self.waiting:
            copy_rows(self.model, self.names, self.waiting)
            self.waiting = []


class RowStreams:
    """Several models' rows written while they are produced, on PostgreSQL: one ``COPY`` is
    open at a time, its data sent by a worker thread, so the server inserts while the caller
    computes; ``switch`` (between chunks of work) closes it and opens the one of the stream
    with the most rows waiting, which it sends first. Elsewhere rows wait for ``flush``."""

    def __init__(self, *streams: RowStream) -> None:
        self.streams = streams
        self._open: ExitStack | None = None
        self._current: RowStream | None = None

    @contextmanager
    def streaming(self) -> Iterator[None]:
        """Stream for the block's duration; no other statement may run on the connection
        meanwhile. Rows still waiting at the end are left for ``flush``; after a failure none
        is kept (the open ``COPY`` fails, the waiting rows are dropped)."""
        postgresql = connection.vendor == "postgresql"
        try:
            if postgresql:
                connection.ensure_connection()
                self.switch()
            yield
        except BaseException as error:
            self._close(error)
            for stream in self.streams:
                stream.waiting = []
            raise
        self._close()

    def switch(self) -> None:
        """Close the open ``COPY`` and open the one with the most rows waiting."""
        if connection.vendor != "postgresql":
            return
        self._close()
        stream = max(self.streams, key=lambda one: len(one.waiting))
        stack = ExitStack()
        cursor = stack.enter_context(psycopg.Cursor(connection.connection))
        copy = stack.enter_context(
            cursor.copy(
                _copy_statement(stream.model, stream.names), writer=QueuedLibpqWriter(cursor)
            )
        )
        self._open, self._current = stack, stream
        for row in stream.waiting:
            copy.write_row(row)
        stream.waiting = []
        stream.send = copy.write_row

    def _close(self, error: BaseException | None = None) -> None:
        if self._current is not None:
            self._current.send = None
            self._current = None
        if self._open is not None:
            stack, self._open = self._open, None
            if error is None:
                stack.close()
            else:
                stack.__exit__(type(error), error, error.__traceback__)

    def flush(self) -> None:
        """Write every stream's waiting rows."""
        for stream in self.streams:
            stream.flush()


def _copy_statement(model: type[Model], names: Sequence[str]) -> str:
    return f"COPY {_table_and_columns(model, names)} FROM STDIN"


def _table_and_columns(model: type[Model], names: Sequence[str]) -> str:
    """``table (col, …)``, quoted, for ``names`` of ``model``."""
    qn = connection.ops.quote_name
    columns = ", ".join(qn(str(f.column)) for f in _fields(model, names))
    return f"{qn(model._meta.db_table)} ({columns})"


def copy_rows(model: type[Model], names: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Insert rows of plain values (UUIDs as text, JSON as text) into ``names`` columns:
    ``COPY`` on PostgreSQL, ``executemany`` elsewhere (values prepared by the fields)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            raw = cursor.cursor
            # a worker thread sends while this one formats the next rows
            with raw.copy(_copy_statement(model, names), writer=QueuedLibpqWriter(raw)) as copy:
                for row in rows:
                    copy.write_row(row)
            return
        fields = _fields(model, names)
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
                f"INSERT INTO {_table_and_columns(model, names)} VALUES ({marks})",  # noqa: S608
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


def _bump_period_volume(delta: Mapping[tuple[Any, date], int]) -> None:
    upsert_add(
        IBPeriodVolume, ("ib", "period"), ("volume",), ((i, p, v) for (i, p), v in delta.items())
    )


def _bump_client_volume(delta: Mapping[Any, list[int]]) -> None:
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
        "held": a.held,
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
            if (
                to_state == S.PAYABLE
                and a.part == "holdback"
                and a.release_at is not None
                and a.release_at > now
            ):
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
                after={
                    "state": to_state,
                    "amount": sum(a.amount for a in moved),
                    "held": sum(a.held for a in moved),
                },
            )
            for a in moved:
                a.state = to_state
                a.state_changed_at = now
        Accrual.objects.filter(pk__in=[a.pk for a in rows]).update(
            state=to_state, state_changed_at=now
        )
    return rows


def _compensate(a: Accrual, *, reason: str, actor: str) -> None:
    """Take a cancelled accrual's amount (and the holdback it still carries) back out of the
    IB's payable (a compensating transfer: one batch transfer carries many accruals, so it is
    not reversed whole)."""
    expense = ledger.system_account("ib_commission_expense", a.currency).id
    payable = ledger.open_account(OwnerType.IB, str(a.ib_id), a.currency, Bucket.PAYABLE).id
    total = a.amount + a.held
    ledger.transfer(
        f"ibc-cancel:{a.pk}",
        debit_account=payable if total > 0 else expense,
        credit_account=expense if total > 0 else payable,
        amount=abs(total),
        currency=a.currency,
        kind="ib_commission_cancel",
        metadata={"accrual": str(a.pk), "compensates": str(a.ledger_transfer_id)},
        actor=actor,
        reason=reason,
    )


def release_holdbacks(*, now: datetime | None = None, limit: int = 5000) -> int:
    """Move holdbacks past their release date into accruals of their own (``split_held``),
    which are then approved and paid like any other; returns how many moved. Run by the
    periodic ``partners.release_holdbacks``; a run takes at most ``limit``, oldest first."""
    now = now or clock.now()
    with transaction.atomic():
        rows = list(
            Accrual.objects.select_for_update()
            .filter(held__gt=0, release_at__lte=now)
            .exclude(state=S.CANCELLED)
            .order_by("release_at")[:limit]
        )
        made = split_held(rows, now=now)
        if made:
            audit.record(
                actor="system:partners",
                action="partners.holdbacks_released",
                object_type="accruals",
                object_id=str(made[0].pk),
                reason="holdback release date reached",
                after={
                    "accruals": len(made),
                    "amounts": _totals(made),
                    "through": now.isoformat(),
                },
            )
    return len(made)


def _totals(rows: Sequence[Accrual]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for a in rows:
        out[a.currency] += a.amount
    return dict(sorted(out.items()))


def split_held(rows: Sequence[Accrual], *, now: datetime) -> list[Accrual]:
    """Move the holdback each row still carries (``held``; cancelled rows keep theirs) into a
    ``holdback`` accrual of its own: the same source, IB, level, plan version, client, ledger
    transfer and release date, accrued. The rows must be locked; returns the new accruals."""
    carriers = [a for a in rows if a.held > 0 and a.state != S.CANCELLED]
    made = [_holdback_of(a, now) for a in carriers]
    if made:
        Accrual.objects.bulk_create(made)
        Accrual.objects.filter(pk__in=[a.pk for a in carriers]).update(held=0)
        for a in carriers:
            a.held = 0
    return made


def _holdback_of(a: Accrual, now: datetime) -> Accrual:
    working = {**a.computation, "part": "holdback", "part_amount": a.held} if a.computation else {}
    return Accrual(
        id=new_id(),
        source_key=a.source_key,
        kind=a.kind,
        part="holdback",
        ib_id=a.ib_id,
        level=a.level,
        deal_id=a.deal_id,
        client_id=a.client_id,
        plan_version_id=a.plan_version_id,
        currency=a.currency,
        amount=a.held,
        computation=working,
        state=S.ACCRUED,
        release_at=a.release_at,
        occurred_at=a.occurred_at,
        accrued_at=a.accrued_at,
        state_changed_at=now,
        ledger_transfer_id=a.ledger_transfer_id,
        adjusts_id=a.pk,  # the accrual it moved out of
        actor="system:partners",
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
