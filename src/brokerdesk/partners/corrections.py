"""Dealer corrections of commissioned deals (``trading.deal_corrected``).

``apply_corrections`` is called by the ``partners.correct_deals`` consumer, apart from the
accrual hot path. Each correction is applied once per (deal, ``version_msc``): one not newer
than the newest applied to the deal (a duplicate, or an older version delivered late) changes
nothing. A correction is recorded as a ``DealCorrection`` (the deal before and after, what it
changed) and audited.

* A deal with a ``DealRecord``: what the deal should pay is computed again from ``after`` (zero
  for a delete or a deal that is no longer a closing trade) under the SAME plan version (the one
  valid at its close time), the same tier input (``tier_volume``), the same IBs per level (the
  original accruals and exclusions; a level that had none takes the current upline) and the
  same verdicts that do not depend on the deal (plan, suspension, currency, client filters).
  Per (IB, level, part) the difference is booked: unpaid accruals (accrued, approved, payable)
  are cancelled (compensating ledger transfer) and a ``correction`` accrual books the target
  less what was already paid. A negative remainder (the IB was paid more) is a clawback,
  created payable so that the next payout nets it; ``pay_ib`` never pays a negative total.
* A deal without one (the correction overtook its ``trading.deal_closed``, or no such event
  comes because the deal was not a closing trade before): a closing trade ``after`` is accrued
  as a new deal, with the corrected figures; the ``deal_closed`` that may still come finds the
  deal recorded and adds nothing. A deleted deal (or one no longer closing) is recorded as a
  tombstone (``DealRecord`` plus an exclusion ``deal_deleted`` / ``not_a_closing_trade``) for
  the same reason.
* Counters: the IB's tier-period volume and the client's volume move by the eligible volume's
  change; deals already paid at a tier are not re-tiered. A CPA already accrued is never clawed
  back automatically: the correction is flagged for staff (``review``, listed by
  ``queries.corrections_to_review``); a client whose volume now qualifies gets the CPA checked.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.db import transaction
from django.db.models import Max

from brokerdesk.core import audit, clock
from brokerdesk.core.errors import ValidationError
from brokerdesk.core.events import emit
from brokerdesk.core.ids import new_id
from brokerdesk.ledger import services as ledger
from brokerdesk.ledger.models import Bucket, OwnerType
from brokerdesk.partners import hierarchy, rules
from brokerdesk.partners.accrual import (
    FactsProvider,
    _Batch,
    _bump_client_volume,
    _bump_daily,
    _bump_period_volume,
    _compensate,
    accrual_key,
    policy_facts,
    split_held,
)
from brokerdesk.partners.deals import ClosedDeal, closed_deal_of, deal_extras, parse_deal_closed
from brokerdesk.partners.events import CommissionCorrected
from brokerdesk.partners.models import (
    IB,
    Accrual,
    AccrualKind,
    AccrualState,
    Attribution,
    DealCorrection,
    DealRecord,
    Exclusion,
    IBPeriodVolume,
    IBStatus,
    PlanVersion,
)
from brokerdesk.partners.plans import PlanBook

DEAL_CORRECTED = "trading.deal_corrected"
ACTOR = "system:partners.corrections"
CLOSING_ENTRIES = frozenset({1, 2, 3})  # MT5 ENTRY_OUT, ENTRY_INOUT, ENTRY_OUT_BY
TRADE_ACTIONS = frozenset({0, 1})  # DEAL_BUY, DEAL_SELL
#: Original exclusions that do not depend on the deal's figures: they hold for the correction.
STICKY_RULES = frozenset(
    {
        "no_plan",
        "ib_suspended",
        "currency_mismatch",
        "country_not_included",
        "country_excluded",
        "kyc_state",
        "policy",
    }
)
#: Original outcomes that prove the client passed the client filters.
CLIENT_PASSED = frozenset({"", "min_volume", "min_holding_time", "zero_commission"})
S = AccrualState
UNPAID = (S.ACCRUED, S.APPROVED, S.PAYABLE)
_ORDER: dict[str, int] = {S.ACCRUED: 0, S.APPROVED: 1, S.PAYABLE: 2}


@dataclass(frozen=True)
class Correction:
    """One ``trading.deal_corrected`` payload, typed."""

    server: str
    login: int
    deal: int
    change: str  # update | delete
    version_msc: int
    before: dict[str, Any]
    after: dict[str, Any] | None

    @property
    def key(self) -> str:
        """The deal key (``DealRecord.key``)."""
        return f"{self.server}:{self.deal}"

    @property
    def source_key(self) -> str:
        """The source key of the accruals this correction books."""
        return f"corr:{self.key}:{self.version_msc}"


@dataclass
class CorrectionReport:
    """What one ``apply_corrections`` call did."""

    applied: int = 0
    duplicates: int = 0  # same version again, or older than the newest applied
    ignored: int = 0  # neither before nor after a closing trade, deal never recorded


def parse_correction(payload: dict[str, Any]) -> Correction:
    """Parse a ``trading.deal_corrected`` payload; ``ValidationError`` names a bad field."""
    try:
        change = str(payload["change"])
        if change not in ("update", "delete"):
            raise ValidationError(
                "change must be update or delete.", code="invalid", field="change"
            )
        after = payload.get("after")
        if change == "update" and not isinstance(after, dict):
            raise ValidationError("An update carries after.", code="missing", field="after")
        return Correction(
            server=str(payload["server"]),
            login=int(payload["login"]),
            deal=int(payload["deal"]),
            change=change,
            version_msc=int(payload["version_msc"]),
            before=dict(payload.get("before") or {}),
            after=dict(after) if change == "update" and isinstance(after, dict) else None,
        )
    except KeyError as exc:
        raise ValidationError(f"The correction has no {exc.args[0]}.", code="missing") from None
    except (TypeError, ValueError):
        raise ValidationError("The correction has a non-integer field.", code="invalid") from None


def is_closing_trade(state: dict[str, Any] | None) -> bool:
    """True for a BUY/SELL deal with entry OUT, INOUT or OUT_BY (what ``deal_closed`` reports)."""
    if not state:
        return False
    try:
        return (
            int(state.get("entry", -1)) in CLOSING_ENTRIES
            and int(state.get("action", -1)) in TRADE_ACTIONS
        )
    except (TypeError, ValueError):
        return False


def deal_of_state(
    c: Correction, state: dict[str, Any], base: ClosedDeal | None = None, bonus_cost: int = 0
) -> ClosedDeal:
    """A deal state of the correction as the engine's ``ClosedDeal`` (what ``deal_closed``
    would carry); with ``base``, the fields the platform does not correct come from it."""
    deal = parse_deal_closed(
        {
            "server": c.server,
            "login": state.get("login", c.login),
            "deal": c.deal,
            "time_msc": state.get("time_msc"),
            "symbol": state.get("symbol"),
            "volume": state.get("volume"),
            "volume_closed": state.get("volume_closed"),
            "profit": state.get("profit"),
            "commission": state.get("commission"),
            "storage": state.get("storage"),
            "fee": state.get("fee"),
            "entry": state.get("entry"),
            "position_id": state.get("position_id"),
            "bonus_cost": bonus_cost,
        }
    )
    if base is None:
        return deal
    return replace(
        deal,
        closed_at=base.closed_at,
        currency=base.currency,
        group=base.group,
        client_id=base.client_id,
        opened_at=base.opened_at,
        spread_revenue=base.spread_revenue,
        bonus_cost=base.bonus_cost,
    )


def apply_corrections(
    payloads: Iterable[dict[str, Any]], *, facts: FactsProvider | None = None
) -> CorrectionReport:
    """Apply corrections in order, in one transaction (see module doc). Idempotent."""
    report = CorrectionReport()
    with transaction.atomic():
        for payload in payloads:
            _apply(parse_correction(payload), facts or policy_facts, report)
    return report


def _apply(c: Correction, facts: FactsProvider, report: CorrectionReport) -> None:
    record = DealRecord.objects.select_for_update().filter(pk=c.key).first()
    newest = DealCorrection.objects.filter(deal_key=c.key).aggregate(v=Max("version_msc"))["v"]
    if newest is not None and c.version_msc <= newest:
        report.duplicates += 1
        return
    if record is None:
        if not (is_closing_trade(c.before) or is_closing_trade(c.after)):
            report.ignored += 1  # a balance or opening deal: no commission either way
            return
        outcome, working = _unrecorded(c, facts)
        _save(c, outcome, working, "")
    else:
        _rebook(c, record, facts)
    report.applied += 1


def _save(c: Correction, outcome: str, working: dict[str, Any], review: str) -> DealCorrection:
    row = DealCorrection.objects.create(
        id=new_id(),
        deal_key=c.key,
        version_msc=c.version_msc,
        change=c.change,
        before=c.before,
        after=c.after,
        outcome=outcome,
        working=working,
        review=review,
        applied_at=clock.now(),
    )
    audit.record(
        actor=ACTOR,
        action="partners.deal_corrected",
        object_type="deal",
        object_id=c.key,
        reason=f"dealer {c.change} (version {c.version_msc}): {outcome}",
        before={"deal": c.before},
        after={"deal": c.after, "working": working, "review": review},
    )
    return row


# ---------------------------------------------------------------------------- not recorded yet


def _unrecorded(c: Correction, facts: FactsProvider) -> tuple[str, dict[str, Any]]:
    """A correction that overtook (or replaces) the deal's ``deal_closed``."""
    if c.after is not None and is_closing_trade(c.after):
        from brokerdesk.bonuses.queries import bonus_costs_of_deals

        cost = bonus_costs_of_deals([c.key]).get(c.key, 0)
        _Batch([deal_of_state(c, c.after, bonus_cost=cost)], facts).run()
        return "accrued_new", {}
    deal = deal_of_state(c, c.before)
    from brokerdesk.clients.queries import client_for_login

    view = client_for_login(c.server, c.login)
    client_id = view.client_id if view else None
    ib_id = (
        Attribution.objects.filter(client_id=client_id).values_list("ib_id", flat=True).first()
        if client_id
        else None
    )
    now = clock.now()
    DealRecord.objects.create(
        key=c.key,
        server=c.server,
        login=c.login,
        deal=c.deal,
        client_id=client_id,
        ib_id=ib_id,
        closed_at=deal.closed_at,
        symbol=deal.symbol,
        volume=deal.volume,
        profit=deal.profit,
        commission=deal.commission,
        swap=deal.swap,
        position_id=deal.position_id,
        payload=deal_extras(deal),
        processed_at=now,
    )
    rule = "deal_deleted" if c.after is None else "not_a_closing_trade"
    if ib_id is not None:
        Exclusion.objects.create(
            id=new_id(),
            source_key=c.key,
            deal_id=c.key,
            ib_id=ib_id,
            level=0,
            client_id=client_id,
            rule=rule,
            detail=f"dealer {c.change} (version {c.version_msc}) before the deal was processed",
            occurred_at=deal.closed_at,
            recorded_at=now,
        )
    working = {"counted": False, "volume": 0, "in_daily": False, "deleted": c.after is None}
    return "tombstone", working


# ---------------------------------------------------------------------------- rebooking


@dataclass
class _Target:
    amount: int
    remainder_ppm: int
    volume: int


def _rebook(c: Correction, record: DealRecord, facts: FactsProvider) -> None:
    key = c.key
    previous = list(
        DealCorrection.objects.filter(deal_key=key)
        .order_by("version_msc")
        .values_list("version_msc", "working")
    )
    if any(w.get("deleted") for _, w in previous):
        # a delete is final: a later correction cannot revive the deal's commission
        gone = {"counted": False, "volume": 0, "in_daily": False, "deleted": True}
        _save(c, "already_deleted", gone, "")
        return
    sources = [key, *(f"corr:{key}:{v}" for v, _ in previous)]
    accruals = list(
        Accrual.objects.select_for_update()
        .filter(source_key__in=sources, kind__in=[AccrualKind.DEAL, AccrualKind.CORRECTION])
        .order_by("pk")
    )
    # a holdback still carried by its main accrual is booked per part like any other
    accruals += split_held(accruals, now=clock.now())
    originals = list(Exclusion.objects.filter(source_key=key))
    direct = record.ib_id
    base = closed_deal_of(record)
    level0_rule = next((x.rule for x in originals if x.level == 0), "")
    counted_before = level0_rule in ("", "zero_commission")
    volume_before = base.volume
    in_daily_before = True  # the dashboard counts every deal of an attributed client
    for _, w in previous:  # the newest state a correction left, if any
        if "counted" in w:
            counted_before, volume_before = bool(w["counted"]), int(w["volume"])
            in_daily_before = bool(w.get("in_daily", True))
    removed = c.after is None or not is_closing_trade(c.after)
    if direct is None or record.client_id is None:
        nobody = {"counted": False, "volume": 0, "in_daily": False, "deleted": c.after is None}
        _save(c, "unattributed", nobody, "")
        return
    new_deal = None if removed else deal_of_state(c, c.after or {}, base)

    version = _version(accruals, originals, direct, record.closed_at)
    plan_rules = rules.parse_rules(version.rules) if version is not None else None
    counted_after = False
    rule: tuple[str, str] | None = None
    targets: dict[tuple[UUID, int, str], _Target] = {}
    snapshot = _snapshot(direct, accruals, originals, plan_rules)
    pool_working: dict[str, Any] = {}
    if new_deal is not None and plan_rules is not None and level0_rule not in STICKY_RULES:
        rule = (
            rules.check_symbol(new_deal.symbol, plan_rules.filters)
            or rules.check_group(new_deal.group, plan_rules.filters)
            or (
                None
                if level0_rule in CLIENT_PASSED
                else rules.check_client(
                    plan_rules.filters, facts([record.client_id])[record.client_id]
                )
            )
            or rules.check_deal(new_deal, plan_rules.filters)
        )
        counted_after = rule is None
    tier = record.tier_volume
    if tier is None:
        period = rules.period_start(record.closed_at)
        tier = (
            IBPeriodVolume.objects.filter(ib_id=direct, period=period)
            .values_list("volume", flat=True)
            .first()
            or 0
        )
    if counted_after and new_deal is not None and plan_rules is not None:
        group = rules.symbol_group(new_deal.symbol, plan_rules.symbol_groups)
        numerator, _ = rules.pool_numerator(new_deal, plan_rules, group, tier)
        pool = rules.compute_pool(new_deal, plan_rules, tier)
        pool_working = {
            "parts": list(pool.parts),
            "multiplier_bps": pool.multiplier_bps,
            "period_volume_before": tier,
            "exact": rules.frac(pool.exact),
            "amount": pool.amount,
        }
        for level, _bps, amount, remainder in rules.split_numerator(
            numerator, plan_rules.overrides, len(snapshot) - 1
        ):
            who, active = snapshot[level]
            if not active or amount <= 0:
                continue
            held = amount * plan_rules.holdback_bps // rules.BPS
            targets[(who, level, "main")] = _Target(amount - held, remainder, new_deal.volume)
            if held:
                targets[(who, level, "holdback")] = _Target(held, 0, 0)
    elif rule is not None and new_deal is not None:
        Exclusion.objects.get_or_create(
            source_key=c.source_key,
            ib_id=direct,
            level=0,
            rule=rule[0],
            defaults={
                "id": new_id(),
                "deal_id": key,
                "client_id": record.client_id,
                "plan_version": version,
                "detail": f"after the dealer's correction (version {c.version_msc}): {rule[1]}",
                "occurred_at": record.closed_at,
                "recorded_at": clock.now(),
            },
        )

    lines = _book(c, record, version, plan_rules, accruals, targets, pool_working)
    volume_after = new_deal.volume if new_deal is not None else 0
    moved = (volume_after if counted_after else 0) - (volume_before if counted_before else 0)
    _counters(
        record,
        direct,
        lines,
        (volume_before if in_daily_before else 0, int(in_daily_before)),
        (volume_after, int(not removed)),
        moved,
        int(counted_after) - int(counted_before),
    )
    review = _cpa_review(record.client_id, plan_rules, moved, facts)
    working: dict[str, Any] = {
        "counted": counted_after,
        "volume": volume_after,
        "in_daily": not removed,
        "deleted": c.after is None,
        "plan_version": str(version.pk) if version else None,
        "tier_volume": tier,
        "excluded_by": rule[0] if rule else (level0_rule if level0_rule in STICKY_RULES else ""),
        "pool": pool_working,
        "lines": lines,
    }
    outcome = "rebooked" if any(x["booked"] or x["cancelled"] for x in lines) else "unchanged"
    _save(c, outcome, working, review)
    if lines:
        emit(
            CommissionCorrected(
                deal_key=key,
                version_msc=c.version_msc,
                change=c.change,
                currency=version.plan.currency if version else "",
                day=record.closed_at.date().isoformat(),
                client_id=str(record.client_id),
                lines=[{k: x[k] for k in ("ib_id", "level", "part", "old", "new")} for x in lines],
            )
        )


def _version(
    accruals: Sequence[Accrual], originals: Sequence[Exclusion], direct: UUID, when: datetime
) -> PlanVersion | None:
    """The plan version of the original accrual (the one valid at the deal's close time)."""
    vid = next((a.plan_version_id for a in accruals if a.plan_version_id), None) or next(
        (x.plan_version_id for x in originals if x.plan_version_id), None
    )
    if vid is not None:
        return PlanVersion.objects.select_related("plan").get(pk=vid)
    return PlanBook([direct]).version_for(direct, when)


def _snapshot(
    direct: UUID,
    accruals: Sequence[Accrual],
    originals: Sequence[Exclusion],
    plan_rules: rules.PlanRules | None,
) -> list[tuple[UUID, bool]]:
    """(IB, active) per level: who earned (or was excluded as suspended) on the original; a
    level with neither takes the current upline and its current status."""
    levels = plan_rules.override_levels if plan_rules else 0
    current = hierarchy.uplines([direct], levels)[direct]
    chain: dict[int, tuple[UUID, bool | None]] = {0: (direct, None)}
    for node in current:
        chain[node.depth] = (node.ib_id, None)
    for kind in (AccrualKind.CORRECTION, AccrualKind.DEAL):  # the original's IB wins
        for a in accruals:
            if a.kind == kind:
                chain[a.level] = (a.ib_id, True)
    for x in originals:
        if x.rule == "ib_suspended":
            chain[x.level] = (x.ib_id, False)
    unknown = [ib for ib, active in chain.values() if active is None]
    status = dict(IB.objects.filter(pk__in=unknown).values_list("id", "status"))
    out: list[tuple[UUID, bool]] = []
    for level in range(levels + 1):
        if level not in chain:
            break
        ib, active = chain[level]
        out.append((ib, active if active is not None else status.get(ib) == IBStatus.ACTIVE))
    return out


def _book(
    c: Correction,
    record: DealRecord,
    version: PlanVersion | None,
    plan_rules: rules.PlanRules | None,
    accruals: Sequence[Accrual],
    targets: dict[tuple[UUID, int, str], _Target],
    pool_working: dict[str, Any],
) -> list[dict[str, Any]]:
    """Book target - current per (IB, level, part): cancel what is unpaid, accrue the rest."""
    groups: dict[tuple[UUID, int, str], list[Accrual]] = defaultdict(list)
    for a in accruals:
        if a.state != S.CANCELLED:
            groups[(a.ib_id, a.level, a.part)].append(a)
    now = clock.now()
    lines: list[dict[str, Any]] = []
    currency = version.plan.currency if version else ""
    for gkey in sorted(set(groups) | set(targets), key=lambda k: (k[1], k[2], str(k[0]))):
        ib_id, level, part = gkey
        rows = groups.get(gkey, [])
        target = targets.get(gkey, _Target(0, 0, 0))
        old = sum(a.amount for a in rows)
        if target.amount == old:
            continue
        paid = [a for a in rows if a.state == S.PAID]
        unpaid = [a for a in rows if a.state in UNPAID]
        paid_sum = sum(a.amount for a in paid)
        reason = (
            f"dealer {c.change} of deal {c.key} (version {c.version_msc}): "
            f"commission {old} -> {target.amount}"
        )
        for a in unpaid:
            if a.ledger_transfer_id is not None:
                _compensate(a, reason=reason, actor=ACTOR)
        if unpaid:
            Accrual.objects.filter(pk__in=[a.pk for a in unpaid]).update(
                state=S.CANCELLED, state_changed_at=now, reason=reason
            )
        rest = target.amount - paid_sum
        booked = None
        if rest != 0:
            code = rows[0].currency if rows else currency
            state: str
            if rest < 0:
                state = S.PAYABLE  # a clawback: the next payout nets it
            elif unpaid and rest <= sum(a.amount for a in unpaid):
                state = min((a.state for a in unpaid), key=lambda st: _ORDER[st])
            else:
                state = S.ACCRUED
            booked = _accrue(
                c,
                record,
                version,
                plan_rules,
                ib_id,
                level,
                part,
                rest,
                state,
                code,
                target,
                paid,
                rows,
                pool_working,
                reason,
                now,
            )
        lines.append(
            {
                "ib_id": str(ib_id),
                "level": level,
                "part": part,
                "old": old,
                "new": target.amount,
                "paid": paid_sum,
                "cancelled": [str(a.pk) for a in unpaid],
                "booked": str(booked.pk) if booked else None,
                "amount": rest,
                "currency": rows[0].currency if rows else currency,
            }
        )
    return lines


def _accrue(
    c: Correction,
    record: DealRecord,
    version: PlanVersion | None,
    plan_rules: rules.PlanRules | None,
    ib_id: UUID,
    level: int,
    part: str,
    amount: int,
    state: str,
    currency: str,
    target: _Target,
    paid: Sequence[Accrual],
    rows: Sequence[Accrual],
    pool_working: dict[str, Any],
    reason: str,
    now: datetime,
) -> Accrual:
    """One correction accrual with its ledger posting (expense <-> the IB's payable)."""
    release = None
    if part == "holdback" and plan_rules is not None and amount > 0:
        release = record.closed_at + timedelta(days=plan_rules.holdback_days)
    accrual = Accrual(
        id=new_id(),
        source_key=c.source_key,
        kind=AccrualKind.CORRECTION,
        part=part,
        ib_id=ib_id,
        level=level,
        deal_id=record.key,
        client_id=record.client_id,
        plan_version=version,
        currency=currency,
        amount=amount,
        remainder_ppm=target.remainder_ppm if part == "main" and not paid else 0,
        volume=target.volume - sum(a.volume for a in paid),
        computation={
            "correction": {
                "deal": c.key,
                "change": c.change,
                "version_msc": c.version_msc,
                "before": c.before,
                "after": c.after,
            },
            "pool": pool_working,
            "plan": version.plan.code if version else "",
            "version": version.number if version else None,
            "level": level,
            "part": part,
            "target": target.amount,
            "previously": sum(a.amount for a in rows),
            "paid": sum(a.amount for a in paid),
            "cancelled": [str(a.pk) for a in rows if a.state != S.PAID],
            "amount": amount,
        },
        state=state,
        release_at=release,
        occurred_at=record.closed_at,
        accrued_at=now,
        state_changed_at=now,
        adjusts=rows[0] if rows else None,
        reason=reason,
        actor=ACTOR,
    )
    expense = ledger.system_account("ib_commission_expense", currency).id
    payable = ledger.open_account(OwnerType.IB, str(ib_id), currency, Bucket.PAYABLE).id
    result = ledger.transfer(
        accrual_key(c.source_key, ib_id, version.pk if version else None, level, part),
        debit_account=expense if amount > 0 else payable,
        credit_account=payable if amount > 0 else expense,
        amount=abs(amount),
        currency=currency,
        kind="ib_commission_correction",
        metadata={"accrual": str(accrual.id), "deal": c.key, "version_msc": c.version_msc},
        actor=ACTOR,
        reason=reason,
    )
    accrual.ledger_transfer_id = result.transfer_id
    accrual.save(force_insert=True)
    return accrual


def _counters(
    record: DealRecord,
    direct: UUID,
    lines: Sequence[dict[str, Any]],
    shown_before: tuple[int, int],
    shown_after: tuple[int, int],
    moved: int,
    counted: int,
) -> None:
    """Tier-period and client volume by the eligible volume's change (``moved``; ``counted``:
    the change in eligible deals); the dashboard by the earnings' change and, for the direct
    IB, by the deal's (volume, count) as shown before and after."""
    now = clock.now()
    if moved or counted:
        _bump_period_volume({(direct, rules.period_start(record.closed_at)): moved})
        assert record.client_id is not None
        _bump_client_volume({record.client_id: [moved, counted]})
    day = record.closed_at.date()
    currency = IB.objects.filter(pk=direct).values_list("currency", flat=True).first() or ""
    daily: dict[tuple[Any, Any, int, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    row = daily[(direct, day, 0, currency)]
    row[0] += shown_after[1] - shown_before[1]
    row[1] += shown_after[0] * shown_after[1] - shown_before[0]
    for x in lines:
        daily[(UUID(x["ib_id"]), day, x["level"], x["currency"] or currency)][2] += (
            x["new"] - x["old"]
        )
    _bump_daily({k: v for k, v in daily.items() if any(v)}, now)


def _cpa_review(
    client_id: UUID, plan_rules: rules.PlanRules | None, moved: int, facts: FactsProvider
) -> str:
    """A CPA already accrued is not clawed back: say so for staff. One not yet accrued is
    checked again when the volume went up."""
    if plan_rules is None or plan_rules.cpa is None or moved == 0:
        return ""
    paid = Accrual.objects.filter(kind=AccrualKind.CPA, source_key=f"cpa:{client_id}").exists()
    if paid and moved < 0:
        return (
            f"CPA already accrued for client {client_id}; the correction lowered the client's "
            f"eligible volume by {-moved} (CPA minimum {plan_rules.cpa.min_volume}). "
            "Not clawed back automatically."
        )
    if not paid and moved > 0:
        _Batch([], facts).run_cpa([client_id])
    return ""
