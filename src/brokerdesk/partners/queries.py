"""Read side of the partners module: the IB portal's read models and dispute evidence.

Every portal query takes ``viewer``: the IB asking. It sees itself and its subtree only
(checked here through the closure table: anything else is ``NotFound``). Staff tools pass
``viewer=None`` after their own role check. Client fields are privacy-limited: a label such as
"Maria I.", the country and dates — never e-mail, phone or full name.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from uuid import UUID

from django.db.models import Count, F, Q, Sum

from brokerdesk.core import clock
from brokerdesk.core.errors import NotFound, ValidationError
from brokerdesk.partners.hierarchy import as_uuid
from brokerdesk.partners.models import (
    IB,
    Accrual,
    AccrualKind,
    Attribution,
    ClientFunding,
    DealCorrection,
    DealRecord,
    Exclusion,
    IBClosure,
    IBDailyActivity,
)

# what an accrual earned: its amount and a holdback it still carries (``Accrual.held``)
EARNED = F("amount") + F("held")


def _visible(viewer: UUID | str | None, ib_id: UUID | str) -> None:
    if viewer is None:
        if not IB.objects.filter(pk=ib_id).exists():
            raise NotFound("No such IB.", code="ib_not_found", field="ib_id")
        return
    if not IBClosure.objects.filter(
        ancestor_id=as_uuid(viewer), descendant_id=as_uuid(ib_id)
    ).exists():
        raise NotFound("No such IB.", code="ib_not_found", field="ib_id")


def _client_visible(viewer: UUID | str | None, client_id: UUID | str) -> None:
    attribution = Attribution.objects.filter(client_id=client_id).first()
    if attribution is None:
        if viewer is None:
            return
        raise NotFound("No such client.", code="client_not_found", field="client_id")
    if viewer is not None:
        _visible(viewer, attribution.ib_id)


# ---------------------------------------------------------------------------- dashboard


@dataclass(frozen=True)
class Activity:
    """One level's activity on one day."""

    day: date
    level: int
    currency: str
    deals: int
    volume: int
    earned: int


def activity(
    ib_id: UUID | str, *, viewer: UUID | str | None, start: date, end: date
) -> list[Activity]:
    """Per day and level (0 = own clients): deals, volume and commission earned; kept by the
    accrual consumer, so today's figures are as fresh as the last processed batch."""
    _visible(viewer, ib_id)
    rows = IBDailyActivity.objects.filter(ib_id=ib_id, day__gte=start, day__lte=end).order_by(
        "day", "level", "currency"
    )
    return [Activity(r.day, r.level, r.currency, r.deals, r.volume, r.earned) for r in rows]


def today(ib_id: UUID | str, *, viewer: UUID | str | None) -> list[Activity]:
    """Today's activity (UTC day)."""
    day = clock.now().date()
    return activity(ib_id, viewer=viewer, start=day, end=day)


@dataclass(frozen=True)
class EarningsRow:
    """Earnings grouped by the requested dimension."""

    key: str
    currency: str
    amount: int
    accruals: int
    volume: int


def earnings(
    ib_id: UUID | str,
    *,
    viewer: UUID | str | None,
    start: datetime,
    end: datetime,
    by: str = "level",
) -> list[EarningsRow]:
    """The IB's earnings in [start, end) by ``level``, ``client``, ``day``, ``state`` or
    ``kind`` (cancelled accruals left out; adjustments included)."""
    _visible(viewer, ib_id)
    column = {
        "level": "level",
        "client": "client_id",
        "state": "state",
        "kind": "kind",
        "day": "occurred_at__date",
    }.get(by)
    if column is None:
        raise NotFound(f"Unknown grouping {by!r}.", code="invalid", field="by")
    rows = (
        Accrual.objects.filter(ib_id=ib_id, occurred_at__gte=start, occurred_at__lt=end)
        .exclude(state="cancelled")
        .values(column, "currency")
        .annotate(amount=Sum(EARNED), n=Count("id"), volume=Sum("volume"))
        .order_by(column, "currency")
    )
    return [
        EarningsRow(str(r[column]), r["currency"], r["amount"] or 0, r["n"], r["volume"] or 0)
        for r in rows
    ]


@dataclass(frozen=True)
class StatementLine:
    """One accrual as the IB sees it (adjustments with their reason)."""

    accrual_id: UUID
    kind: str
    level: int
    occurred_at: datetime
    amount: int
    currency: str
    state: str
    deal: str | None
    reason: str


def statement(
    ib_id: UUID | str,
    *,
    viewer: UUID | str | None,
    start: datetime,
    end: datetime,
    limit: int = 500,
) -> list[StatementLine]:
    """The IB's accruals in [start, end), newest first, adjustments shown with their reason.
    A dealer correction is listed in the period of its deal and in the period it was booked
    (a clawback of last month's deal shows on this month's statement too)."""
    _visible(viewer, ib_id)
    rows = list(
        Accrual.objects.filter(ib_id=ib_id, occurred_at__gte=start, occurred_at__lt=end).order_by(
            "-occurred_at", "-id"
        )[:limit]
    )
    seen = {a.pk for a in rows}
    rows += [
        a
        for a in Accrual.objects.filter(
            ib_id=ib_id, kind=AccrualKind.CORRECTION, accrued_at__gte=start, accrued_at__lt=end
        ).order_by("-accrued_at", "-id")[:limit]
        if a.pk not in seen
    ]
    rows.sort(key=lambda a: (_shown_at(a, start, end), str(a.pk)), reverse=True)
    return [
        StatementLine(
            a.id, a.kind, a.level, a.occurred_at, a.amount, a.currency, a.state, a.deal_id, a.reason
        )
        for a in rows[:limit]
    ]


def _shown_at(a: Accrual, start: datetime, end: datetime) -> datetime:
    """Where a line sorts on a statement: its time, or a correction's booking time when that is
    what brought it into the period."""
    if a.kind == AccrualKind.CORRECTION and not start <= a.occurred_at < end:
        return a.accrued_at
    return a.occurred_at


@dataclass(frozen=True)
class TreeRow:
    """A sub-IB of the tree with its own clients' volume and deals in the period."""

    ib_id: UUID
    code: str
    name: str
    parent_id: UUID | None
    depth: int
    volume: int
    deals: int


def sub_ib_tree(
    ib_id: UUID | str,
    *,
    viewer: UUID | str | None,
    start: date,
    end: date,
    max_depth: int | None = None,
) -> list[TreeRow]:
    """The IB's subtree (depth relative to it) with each IB's own production in the period."""
    _visible(viewer, ib_id)
    links = IBClosure.objects.filter(ancestor_id=as_uuid(ib_id))
    if max_depth is not None:
        links = links.filter(depth__lte=max_depth)
    depth_of = dict(links.values_list("descendant_id", "depth"))
    production = {
        r["ib_id"]: (r["v"] or 0, r["d"] or 0)
        for r in IBDailyActivity.objects.filter(
            ib_id__in=list(depth_of), level=0, day__gte=start, day__lte=end
        )
        .values("ib_id")
        .annotate(v=Sum("volume"), d=Sum("deals"))
    }
    rows = IB.objects.filter(pk__in=list(depth_of)).values_list("id", "code", "name", "parent_id")
    out = [TreeRow(i, c, n, p, depth_of[i], *production.get(i, (0, 0))) for i, c, n, p in rows]
    return sorted(out, key=lambda r: (r.depth, r.code))


@dataclass(frozen=True)
class ClientRow:
    """A client of the subtree, privacy-limited."""

    client_id: UUID
    label: str
    country: str
    ib_id: UUID
    attributed_at: datetime
    funded: bool
    volume: int
    earned: int


def clients(
    ib_id: UUID | str,
    *,
    viewer: UUID | str | None,
    start: datetime,
    end: datetime,
    include_subtree: bool = False,
    limit: int = 500,
) -> list[ClientRow]:
    """The IB's clients (or its whole subtree's) with volume and what the IB earned on them."""
    _visible(viewer, ib_id)
    ibs = (
        list(
            IBClosure.objects.filter(ancestor_id=as_uuid(ib_id)).values_list(
                "descendant_id", flat=True
            )
        )
        if include_subtree
        else [as_uuid(ib_id)]
    )
    attributions = list(
        Attribution.objects.filter(ib_id__in=ibs).order_by("-attributed_at")[:limit]
    )
    ids = [a.client_id for a in attributions]
    funded = set(
        ClientFunding.objects.filter(client_id__in=ids).values_list("client_id", flat=True)
    )
    volume = dict(
        DealRecord.objects.filter(client_id__in=ids, closed_at__gte=start, closed_at__lt=end)
        .values("client_id")
        .annotate(v=Sum("volume"))
        .values_list("client_id", "v")
    )
    earned = dict(
        Accrual.objects.filter(
            ib_id=ib_id, client_id__in=ids, occurred_at__gte=start, occurred_at__lt=end
        )
        .exclude(state="cancelled")
        .values("client_id")
        .annotate(a=Sum(EARNED))
        .values_list("client_id", "a")
    )
    return [
        ClientRow(
            a.client_id,
            a.client_label,
            a.country,
            a.ib_id,
            a.attributed_at,
            a.client_id in funded,
            volume.get(a.client_id) or 0,
            earned.get(a.client_id) or 0,
        )
        for a in attributions
    ]


# ---------------------------------------------------------------------------- evidence


@dataclass(frozen=True)
class Outcome:
    """What one deal meant for the IB: an amount with its working, or the excluding rule."""

    level: int
    amount: int
    currency: str
    plan: str
    version: int | None
    state: str
    computation: dict[str, Any]
    excluded_by: str = ""
    detail: str = ""
    kind: str = "deal"  # deal | correction | cpa | adjustment | excluded
    reason: str = ""  # a correction's or adjustment's reason


@dataclass(frozen=True)
class CorrectionEvidence:
    """A dealer correction of the deal as the commission engine applied it."""

    version_msc: int
    change: str
    before: dict[str, Any]
    after: dict[str, Any] | None
    outcome: str
    working: dict[str, Any]
    review: str
    applied_at: datetime


@dataclass(frozen=True)
class DealEvidence:
    """A deal of the period and every outcome it had for the IB."""

    key: str
    client_id: UUID | None
    closed_at: datetime
    symbol: str
    volume: int
    group: str
    profit: int
    outcomes: list[Outcome] = field(default_factory=list)
    note: str = ""  # why a deal with no outcome earned this IB nothing
    corrections: list[CorrectionEvidence] = field(default_factory=list)


@dataclass(frozen=True)
class Evidence:
    """The answer to "why this amount?" for an IB, a period and optionally one client."""

    ib_id: UUID
    start: datetime
    end: datetime
    client_id: UUID | None
    deals: list[DealEvidence]
    other: list[Outcome]  # CPA and adjustments
    total_volume: int
    total_amount: int


def evidence(
    ib_id: UUID | str,
    *,
    start: datetime,
    end: datetime,
    client_id: UUID | str | None = None,
    viewer: UUID | str | None = None,
    limit: int = 5000,
) -> Evidence:
    """Every deal in [start, end) that reached this IB (as direct IB or upline) — or, with
    ``client_id``, every deal of that client — with its accruals (rule version, computation)
    or the rule that excluded it; plus CPA and adjustments of the period."""
    _visible(viewer, ib_id)
    if client_id is not None:
        _client_visible(viewer, client_id)
    accruals = Accrual.objects.filter(ib_id=ib_id, occurred_at__gte=start, occurred_at__lt=end)
    exclusions = Exclusion.objects.filter(ib_id=ib_id, occurred_at__gte=start, occurred_at__lt=end)
    if client_id is not None:
        accruals = accruals.filter(client_id=client_id)
        exclusions = exclusions.filter(client_id=client_id)
    from brokerdesk.partners.accrual import working

    accruals = accruals.select_related("plan_version__plan", "deal")
    exclusions = exclusions.select_related("plan_version__plan")
    by_deal: dict[str, list[Outcome]] = {}
    other: list[Outcome] = []
    for a in accruals[:limit]:
        outcome = Outcome(
            a.level,
            a.amount + a.held,  # the share, with a holdback it still carries
            a.currency,
            a.plan_version.plan.code if a.plan_version else "",
            a.plan_version.number if a.plan_version else None,
            a.state,
            working(a),  # derived from the deal and rule version when not stored
            kind=a.kind,
            reason=a.reason,
        )
        (by_deal.setdefault(a.deal_id, []) if a.deal_id else other).append(outcome)
    for x in exclusions[:limit]:
        outcome = Outcome(
            x.level,
            0,
            "",
            x.plan_version.plan.code if x.plan_version else "",
            x.plan_version.number if x.plan_version else None,
            "excluded",
            {},
            excluded_by=x.rule,
            detail=x.detail,
            kind="excluded",
        )
        (by_deal.setdefault(x.deal_id, []) if x.deal_id else other).append(outcome)
    deal_filter = Q(pk__in=list(by_deal))
    if client_id is not None:
        deal_filter |= Q(client_id=client_id, closed_at__gte=start, closed_at__lt=end)
    records = list(DealRecord.objects.filter(deal_filter).order_by("closed_at", "key")[:limit])
    corrected = corrections_of([d.key for d in records])
    deals = [
        DealEvidence(
            d.key,
            d.client_id,
            d.closed_at,
            d.symbol,
            d.volume,
            d.group,
            d.profit,
            by_deal.get(d.key, []),
            "" if d.key in by_deal else _no_outcome(d, as_uuid(ib_id)),
            [
                CorrectionEvidence(
                    r.version_msc,
                    r.change,
                    r.before,
                    r.after,
                    r.outcome,
                    r.working,
                    r.review,
                    r.applied_at,
                )
                for r in corrected.get(d.key, [])
            ],
        )
        for d in records
    ]
    # cancelled accruals stay listed (the original amounts) but are not owed
    total = sum(o.amount for ds in deals for o in ds.outcomes if o.state != "cancelled") + sum(
        o.amount for o in other if o.state != "cancelled"
    )
    return Evidence(
        UUID(str(ib_id)),
        start,
        end,
        UUID(str(client_id)) if client_id else None,
        deals,
        other,
        sum(d.volume for d in deals),
        total,
    )


def _no_outcome(deal: DealRecord, ib_id: UUID) -> str:
    if deal.ib_id is None:
        return "the client was not attributed to any IB when the deal was processed"
    if deal.ib_id != ib_id:
        return "the client was attributed to another IB when the deal was processed"
    return "no outcome was recorded for this deal"


def exclusion_rules(
    ib_id: UUID | str, *, viewer: UUID | str | None, start: datetime, end: datetime
) -> dict[str, int]:
    """How many deals each rule excluded for the IB in [start, end)."""
    _visible(viewer, ib_id)
    return dict(
        Exclusion.objects.filter(ib_id=ib_id, occurred_at__gte=start, occurred_at__lt=end)
        .values("rule")
        .annotate(n=Count("id"))
        .values_list("rule", "n")
    )


def payable_total(ib_id: UUID | str, currency: str) -> int:
    """What is payable to the IB now."""
    return (
        Accrual.objects.filter(ib_id=ib_id, state="payable", currency=currency).aggregate(
            s=Sum("amount")
        )["s"]
        or 0
    )


def cpa_paid(client_id: UUID | str) -> bool:
    """True when a CPA was accrued for the client."""
    return Accrual.objects.filter(kind=AccrualKind.CPA, source_key=f"cpa:{client_id}").exists()


def ib_id_for_user(user: Any) -> UUID | None:
    """The IB profile signed in as ``user`` (None for anyone who is not a partner)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return IB.objects.filter(user_id=user.pk).values_list("id", flat=True).first()


# ---------------------------------------------------------------------------- staff tools
# The back office calls these after its own role check (partner managers, finance).


@dataclass(frozen=True)
class IBRow:
    """An IB as the staff IB list shows it."""

    id: UUID
    code: str
    name: str
    parent_id: UUID | None
    depth: int
    status: str
    currency: str
    clients: int
    created_at: datetime


def all_ibs(*, limit: int = 500) -> list[IBRow]:
    """Every IB in tree order (each parent before its children), with its client count."""
    rows = list(
        IB.objects.annotate(n_clients=Count("attributions")).order_by("depth", "code")[:limit]
    )
    children: dict[UUID | None, list[IB]] = {}
    for ib in rows:
        children.setdefault(ib.parent_id, []).append(ib)
    ordered: list[IBRow] = []
    known = {ib.pk for ib in rows}

    def walk(parent: UUID | None) -> None:
        for ib in children.get(parent, []):
            ordered.append(
                IBRow(
                    ib.pk,
                    ib.code,
                    ib.name,
                    ib.parent_id,
                    ib.depth,
                    ib.status,
                    ib.currency,
                    int(getattr(ib, "n_clients", 0)),
                    ib.created_at,
                )
            )
            walk(ib.pk)

    walk(None)
    for parent in [p for p in children if p is not None and p not in known]:
        walk(parent)  # subtrees whose top fell outside the limit
    return ordered


@dataclass(frozen=True)
class LinkRow:
    """A referral link or promo code of an IB."""

    id: UUID
    kind: str
    code: str
    campaign: str
    active: bool
    created_at: datetime


def links_of(ib_id: UUID | str) -> list[LinkRow]:
    """The IB's referral links and promo codes, newest first."""
    from brokerdesk.partners.models import ReferralLink

    return [
        LinkRow(link.pk, link.kind, link.code, link.campaign, link.active, link.created_at)
        for link in ReferralLink.objects.filter(ib_id=ib_id).order_by("-created_at", "-id")
    ]


@dataclass(frozen=True)
class ReassignmentRow:
    """A request to move a client to another IB."""

    id: UUID
    client_id: UUID
    from_ib: str
    to_ib: str
    reason: str
    state: str
    funded: bool
    requested_by: str
    requested_at: datetime


def reassignments(*, state: str = "pending", limit: int = 100) -> list[ReassignmentRow]:
    """Reassignment requests in ``state`` (pending ones wait for a second approver), oldest
    first."""
    from brokerdesk.partners.models import Reassignment

    rows = (
        Reassignment.objects.select_related("from_ib", "to_ib")
        .filter(state=state)
        .order_by("requested_at", "id")[:limit]
    )
    return [
        ReassignmentRow(
            r.pk,
            r.client_id,
            r.from_ib.code if r.from_ib else "",
            r.to_ib.code,
            r.reason,
            r.state,
            r.funded,
            r.requested_by,
            r.requested_at,
        )
        for r in rows
    ]


def attributed_ib_code(client_id: UUID | str) -> str:
    """The code of the IB the client is attributed to ("" when none)."""
    row = Attribution.objects.select_related("ib").filter(client_id=client_id).first()
    return row.ib.code if row else ""


@dataclass(frozen=True)
class AccrualGroup:
    """The accruals of one IB in one state and currency, summed: an approval batch."""

    ib_id: UUID
    ib_code: str
    ib_name: str
    state: str
    currency: str
    count: int
    amount: int
    ids: tuple[UUID, ...]


def accrual_groups(
    *, states: tuple[str, ...] = ("accrued", "approved"), limit: int = 100
) -> list[AccrualGroup]:
    """Accruals waiting for a decision, grouped by IB, state and currency (largest first)."""
    # a holdback part waits for its release date (a main part carrying one does not)
    ready = Q(part="main") | Q(release_at__isnull=True) | Q(release_at__lte=clock.now())
    rows = (
        Accrual.objects.filter(ready, state__in=states)
        .values("ib_id", "ib__code", "ib__name", "state", "currency")
        .annotate(n=Count("id"), total=Sum("amount"))
        .order_by("-total", "ib__code")[:limit]
    )
    groups = []
    for row in rows:
        ids = tuple(
            Accrual.objects.filter(
                ready, ib_id=row["ib_id"], state=row["state"], currency=row["currency"]
            )
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        groups.append(
            AccrualGroup(
                row["ib_id"],
                row["ib__code"],
                row["ib__name"],
                row["state"],
                row["currency"],
                int(row["n"]),
                int(row["total"] or 0),
                ids,
            )
        )
    return groups


# ---------------------------------------------------------------------------- the IB portal


@dataclass(frozen=True)
class IBProfile:
    """The signed-in IB's own profile (the IB portal's header)."""

    id: UUID
    code: str
    name: str
    status: str
    currency: str
    depth: int


def ib_profile(ib_id: UUID | str) -> IBProfile:
    """The IB's profile, or ``NotFound``."""
    ib = IB.objects.filter(pk=ib_id).first()
    if ib is None:
        raise NotFound("No such IB.", code="ib_not_found", field="ib_id")
    return IBProfile(ib.pk, ib.code, ib.name, ib.status, ib.currency, ib.depth)


@dataclass(frozen=True)
class PayoutRow:
    """A payout of commissions to the IB's wallet."""

    id: UUID
    currency: str
    amount: int
    paid_at: datetime


def payouts_of(ib_id: UUID | str, *, limit: int = 100) -> list[PayoutRow]:
    """The IB's payouts, newest first."""
    from brokerdesk.partners.models import Payout

    rows = Payout.objects.filter(ib_id=ib_id).order_by("-paid_at", "-id")[:limit]
    return [PayoutRow(p.pk, p.currency, p.amount, p.paid_at) for p in rows]


def earned_by_state(ib_id: UUID | str) -> dict[tuple[str, str], int]:
    """The IB's accrual totals by (state, currency): accrued, approved, payable, paid — and
    ``held``: holdbacks not yet released (carried by accruals that are not cancelled)."""
    rows = (
        Accrual.objects.filter(ib_id=ib_id)
        .values("state", "currency")
        .annotate(total=Sum("amount"), held=Sum("held"))
        .order_by()
    )
    out: dict[tuple[str, str], int] = {}
    for r in rows:
        out[(r["state"], r["currency"])] = int(r["total"] or 0)
        if r["held"] and r["state"] != "cancelled":
            key = ("held", r["currency"])
            out[key] = out.get(key, 0) + int(r["held"])
    return out


@dataclass(frozen=True)
class BatchAccrual:
    """One accrual of a ``commissions.accrued`` batch, as the per-accrual event carried it."""

    accrual_id: UUID
    ib_id: UUID
    kind: str
    source_key: str
    level: int
    amount: int
    currency: str
    plan_version_id: UUID | None
    client_id: UUID | None
    occurred_at: datetime


def _batch(payload: dict[str, Any]) -> Any:
    """The accruals of a ``commissions.accrued`` payload: an id range read on the primary
    key, narrowed to the batch's transfers."""
    first, last, transfers = _batch_keys(payload)
    return Accrual.objects.filter(id__gte=first, id__lte=last, ledger_transfer_id__in=transfers)


def _batch_keys(payload: dict[str, Any]) -> tuple[str, str, list[str]]:
    """A ``commissions.accrued`` payload's first and last accrual id and its transfers."""
    transfers = payload.get("transfers")
    if not isinstance(transfers, dict) or not payload.get("first_id"):
        raise ValidationError(
            "A commissions.accrued payload names its transfers and ids.",
            code="missing",
            field="transfers",
        )
    return payload["first_id"], payload["last_id"], [str(t) for t in transfers.values()]


def batch_accruals(payload: dict[str, Any]) -> list[BatchAccrual]:
    """The accruals of one ``commissions.accrued`` batch (its event payload), by id."""
    rows = (
        _batch(payload)
        .order_by("id")
        .values_list(
            "id",
            "ib_id",
            "kind",
            "source_key",
            "level",
            "amount",
            "currency",
            "plan_version_id",
            "client_id",
            "occurred_at",
        )
    )
    return [BatchAccrual(*row) for row in rows]


@dataclass(frozen=True)
class BatchTotal:
    """What one batch accrued to one IB for one client, day and currency."""

    ib_id: UUID
    client_id: UUID | None
    day: date
    currency: str
    amount: int
    accruals: int


def batch_totals(payload: dict[str, Any]) -> list[BatchTotal]:
    """The accruals of one ``commissions.accrued`` batch summed per IB, client, day (of the
    deal's close) and currency — what a daily rollup needs, in grouped queries. The same
    figures whenever it is read: holdbacks since moved out of the batch's accruals (released)
    are counted with them."""
    from django.db.models.functions import TruncDate

    keys = ("ib_id", "client_id", "day", "currency")
    totals: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0])
    for part, counted in ((_batch(payload), True), (_moved_holdbacks(payload), False)):
        rows = (
            part.annotate(day=TruncDate("occurred_at"))
            .values(*keys)
            .annotate(amount=Sum(EARNED), n=Count("id"))
            .order_by()
            .values_list(*keys, "amount", "n")
        )
        for *key, amount, n in rows:
            total = totals[tuple(key)]
            total[0] += amount or 0
            total[1] += n if counted else 0
    return [
        BatchTotal(ib, client, day, currency, amount, n)
        for (ib, client, day, currency), (amount, n) in sorted(
            totals.items(), key=lambda kv: tuple(map(str, kv[0]))
        )
    ]


def _moved_holdbacks(payload: dict[str, Any]) -> Any:
    """The holdback accruals moved out of a batch's accruals (``accrual.split_held``)."""
    first, last, transfers = _batch_keys(payload)
    return Accrual.objects.filter(
        adjusts_id__gte=first,
        adjusts_id__lte=last,
        part="holdback",
        kind__in=[AccrualKind.DEAL, AccrualKind.CPA],
        ledger_transfer_id__in=transfers,
    )


def orphan_rows() -> int:
    """Accrual-engine rows whose IB, deal, plan version, payout or adjusted accrual does not
    exist (0 when consistent: those references carry no database constraint, see
    ``partners.models``)."""
    from django.db.models import Exists, OuterRef

    from brokerdesk.partners.models import IBPeriodVolume, Payout, PlanVersion

    def missing(model: Any, ref: str, target: Any, key: str = "pk") -> int:
        absent = ~Exists(target.objects.filter(**{key: OuterRef(ref)}))
        return int(model.objects.filter(absent, **{f"{ref}__isnull": False}).count())

    return (
        missing(Accrual, "ib_id", IB)
        + missing(Accrual, "deal_id", DealRecord)
        + missing(Accrual, "plan_version_id", PlanVersion)
        + missing(Exclusion, "ib_id", IB)
        + missing(Exclusion, "deal_id", DealRecord)
        + missing(Exclusion, "plan_version_id", PlanVersion)
        + missing(Accrual, "payout_id", Payout)
        + missing(Accrual, "adjusts_id", Accrual)
        + missing(DealRecord, "ib_id", IB)
        + missing(IBDailyActivity, "ib_id", IB)
        + missing(IBPeriodVolume, "ib_id", IB)
    )


def corrections_of(deal_keys: Sequence[str]) -> dict[str, list[DealCorrection]]:
    """The dealer corrections applied to deals, oldest first per deal."""
    out: dict[str, list[DealCorrection]] = {}
    for row in DealCorrection.objects.filter(deal_key__in=list(deal_keys)).order_by(
        "deal_key", "version_msc"
    ):
        out.setdefault(row.deal_key, []).append(row)
    return out


def corrections_to_review(*, limit: int = 200) -> list[DealCorrection]:
    """Corrections staff should look at (``review`` set: e.g. a CPA accrued on volume that a
    correction took away, which is not clawed back automatically), newest first."""
    return list(DealCorrection.objects.exclude(review="").order_by("-applied_at")[:limit])
