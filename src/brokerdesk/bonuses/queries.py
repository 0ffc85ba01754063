"""Read side of bonuses: a client's bonuses and their history, the withdrawal preview, the
campaign and grant lists of the back office, and the bonus cost of deals (for IB revenue share).

Functions that take ``client_id`` return only that client's rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.translation import gettext as _

from brokerdesk.bonuses.eligibility import CREDIT_KINDS
from brokerdesk.bonuses.models import (
    Bonus,
    BonusEvent,
    BonusStatus,
    Campaign,
    DealBonusCost,
    GrantDecision,
    Kind,
)
from brokerdesk.core.errors import NotFound
from brokerdesk.core.money import Money

LOT = 10_000


@dataclass(frozen=True)
class BonusView:
    """A bonus as the portal, the back office and other modules see it (minor units)."""

    id: UUID
    client_id: UUID
    campaign_id: UUID
    campaign_name: str
    kind: str
    currency: str
    amount: int
    unlocked: int
    forfeited: int
    remaining: int
    status: str
    progress: str
    progress_pct: int
    source: str
    reason: str
    granted_by: str
    granted_at: datetime
    unlock_until: datetime | None
    expires_at: datetime | None
    server: str
    login: int | None


@dataclass(frozen=True)
class HistoryItem:
    """One step of a bonus's history: what happened, why, and the figures."""

    bonus_id: UUID
    at: datetime
    kind: str
    amount: int
    reason_code: str
    reason: str
    figures: dict[str, Any]
    actor: str


@dataclass(frozen=True)
class ForfeiturePreview:
    """What a withdrawal of ``amount`` would remove from the client's locked bonuses."""

    forfeited: int
    bonuses: list[tuple[UUID, str, int]] = field(default_factory=list)


def _progress(b: Bonus) -> tuple[str, int]:
    c = b.campaign
    lots = b.volume_done / LOT
    if b.kind in (Kind.REBATE, Kind.CASHBACK):
        pct = b.unlocked * 100 // b.amount if b.amount else 0
        text = _("%(paid)s of up to %(cap)s paid out") % {
            "paid": Money(b.unlocked, b.currency),
            "cap": Money(b.amount, b.currency),
        }
        return text, pct
    if c.unlock_per_lot:
        needed = -(-(b.amount * LOT) // c.unlock_per_lot) / LOT
        pct = b.unlocked * 100 // b.amount if b.amount else 0
        text = _("%(lots)s of %(needed)s lots traded") % {"lots": lots, "needed": needed}
        return text, pct
    if c.lots_required:
        pct = min(b.volume_done * 100 // c.lots_required, 100)
        text = _("%(lots)s of %(needed)s lots traded") % {
            "lots": lots,
            "needed": c.lots_required / LOT,
        }
        return text, pct
    return _("Not withdrawable; usable for trading until it expires."), 0


def bonus_view(b: Bonus) -> BonusView:
    """The view of one bonus row."""
    text, pct = _progress(b)
    return BonusView(
        id=b.id,
        client_id=b.client_id,
        campaign_id=b.campaign_id,
        campaign_name=b.campaign.name,
        kind=b.kind,
        currency=b.currency,
        amount=b.amount,
        unlocked=b.unlocked,
        forfeited=b.forfeited,
        remaining=b.remaining,
        status=b.status,
        progress=text,
        progress_pct=pct,
        source=b.source,
        reason=b.reason,
        granted_by=b.granted_by,
        granted_at=b.granted_at,
        unlock_until=b.unlock_until,
        expires_at=b.expires_at,
        server=b.server,
        login=b.login,
    )


def bonuses_of(client_id: UUID | str) -> list[BonusView]:
    """The client's bonuses, newest first."""
    rows = Bonus.objects.select_related("campaign").filter(client_id=str(client_id))
    return [bonus_view(b) for b in rows.order_by("-granted_at", "-pk")]


def get_bonus(bonus_id: UUID | str, *, client_id: UUID | str | None = None) -> BonusView:
    """One bonus; with ``client_id``, ``NotFound`` unless it is that client's."""
    try:
        query = Bonus.objects.select_related("campaign").filter(pk=bonus_id)
        if client_id is not None:
            query = query.filter(client_id=str(client_id))
        bonus = query.first()
    except (ValueError, DjangoValidationError):
        bonus = None
    if bonus is None:
        raise NotFound(_("No such bonus."), code="bonus_not_found", field="bonus_id")
    return bonus_view(bonus)


#: History kinds that are notes for staff only (not shown to the client).
STAFF_ONLY_KINDS = ("progress", "corrected")


def history_of(
    client_id: UUID | str, *, bonus_id: UUID | str | None = None, staff: bool = False
) -> list[HistoryItem]:
    """Every step of the client's bonuses (one bonus when given), newest first: the answer
    to "why was my bonus removed", with reasons and figures. ``staff`` adds the staff notes
    (``corrected``: a dealer correction of a counted deal)."""
    rows = BonusEvent.objects.filter(bonus__client_id=str(client_id))
    if bonus_id is not None:
        get_bonus(bonus_id, client_id=client_id)
        rows = rows.filter(bonus_id=bonus_id)
    hidden = ("progress",) if staff else STAFF_ONLY_KINDS
    rows = rows.exclude(kind__in=hidden).order_by("-at", "-pk")[:500]
    return [
        HistoryItem(e.bonus_id, e.at, e.kind, e.amount, e.reason_code, e.reason, e.figures, e.actor)
        for e in rows
    ]


def _cash_available(client_id: UUID | str, currency: str) -> int:
    from brokerdesk.ledger.queries import balances_of

    for b in balances_of("client", str(client_id)):
        if b.currency == currency and b.bucket == "cash":
            return b.available
    return 0


def forfeiture_preview(client_id: UUID | str, currency: str, amount: int) -> ForfeiturePreview:
    """What a withdrawal of ``amount`` (minor units of ``currency``) would forfeit now, by the
    same rule the withdrawal consumer applies."""
    from brokerdesk.bonuses.services import withdrawal_forfeit_amount

    rows = (
        Bonus.objects.select_related("campaign")
        .filter(
            client_id=str(client_id),
            currency=currency,
            status=BonusStatus.ACTIVE,
            kind__in=list(CREDIT_KINDS),
        )
        .order_by("pk")
    )
    cash = _cash_available(client_id, currency)
    items = []
    for bonus in rows:
        remove = withdrawal_forfeit_amount(bonus, amount, cash)
        if remove > 0:
            items.append((bonus.id, bonus.campaign.name, remove))
    return ForfeiturePreview(sum(i[2] for i in items), items)


@dataclass(frozen=True)
class CampaignView:
    """A campaign version and its figures."""

    id: UUID
    code: str
    version: int
    name: str
    kind: str
    trigger: str
    status: str
    currency: str
    promo_code: str
    percent_bps: int
    fixed_amount: int
    max_per_grant: int
    cap_per_client: int
    budget: int
    granted_total: int
    grants: int
    terms: dict[str, Any]
    created_at: datetime


_TERM_FIELDS = (
    "kyc_states",
    "jurisdictions",
    "account_groups",
    "deposit_methods",
    "deposit_sequence",
    "min_deposit",
    "unlock_per_lot",
    "lots_required",
    "window_days",
    "min_equity",
    "rebate_per_lot",
    "cashback_bps",
    "expiry_days",
    "withdrawal_forfeit",
)


def campaign_view(c: Campaign, grants: int | None = None) -> CampaignView:
    """The view of one campaign row."""
    return CampaignView(
        id=c.id,
        code=c.code,
        version=c.version,
        name=c.name,
        kind=c.kind,
        trigger=c.trigger,
        status=c.status,
        currency=c.currency,
        promo_code=c.promo_code,
        percent_bps=c.percent_bps,
        fixed_amount=c.fixed_amount,
        max_per_grant=c.max_per_grant,
        cap_per_client=c.cap_per_client,
        budget=c.budget,
        granted_total=c.granted_total,
        grants=c.bonuses.count() if grants is None else grants,
        terms={k: getattr(c, k) for k in _TERM_FIELDS},
        created_at=c.created_at,
    )


def campaigns(*, include_ended: bool = True) -> list[CampaignView]:
    """Every campaign version, newest first."""
    from django.db.models import Count

    rows = Campaign.objects.annotate(n=Count("bonuses")).order_by("code", "-version")
    if not include_ended:
        rows = rows.exclude(status="ended")
    return [campaign_view(c, c.n) for c in rows]


def get_campaign(campaign_id: UUID | str) -> CampaignView:
    """One campaign, or ``NotFound``."""
    try:
        c = Campaign.objects.filter(pk=campaign_id).first()
    except (ValueError, DjangoValidationError):
        c = None
    if c is None:
        raise NotFound(_("No such campaign."), code="campaign_not_found", field="campaign_id")
    return campaign_view(c)


def grants(
    *,
    campaign_id: UUID | str | None = None,
    client_id: UUID | str | None = None,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 200,
) -> list[BonusView]:
    """Grants for the back office, filtered, newest first."""
    rows = Bonus.objects.select_related("campaign").order_by("-granted_at", "-pk")
    try:
        if campaign_id:
            rows = rows.filter(campaign_id=campaign_id)
        if client_id:
            rows = rows.filter(client_id=client_id)
        if status:
            rows = rows.filter(status=status)
        if kind:
            rows = rows.filter(kind=kind)
        return [bonus_view(b) for b in rows[:limit]]
    except (ValueError, DjangoValidationError):
        return []


@dataclass(frozen=True)
class DecisionView:
    """Why an automatic grant was given or refused."""

    campaign_name: str
    reference: str
    granted: bool
    rule: str
    message: str
    at: datetime


def decisions_of(client_id: UUID | str, *, limit: int = 50) -> list[DecisionView]:
    """The client's automatic grant decisions, newest first (support: "why no bonus")."""
    rows = (
        GrantDecision.objects.select_related("campaign")
        .filter(client_id=str(client_id))
        .order_by("-at")[:limit]
    )
    return [
        DecisionView(d.campaign.name, d.reference, d.granted, d.rule, d.message, d.at) for d in rows
    ]


def promo_campaign_exists(code: str) -> bool:
    """True when a running campaign has this promo code."""
    return Campaign.objects.filter(promo_code=code.strip().upper(), status="active").exists()


def bonus_costs_of_deals(deal_keys: list[str]) -> dict[str, int]:
    """Bonus money each deal released (``server:deal`` → minor units): unlocks, cashback and
    rebates. IB revenue share subtracts it (``partners`` reads it as the deal's bonus cost)."""
    if not deal_keys:
        return {}
    rows = DealBonusCost.objects.filter(deal_key__in=deal_keys).values_list("deal_key", "amount")
    return dict(rows)
