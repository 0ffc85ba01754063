"""Read side of propfirm: products, a client's challenges with rule meters, the staff list.

Functions taking ``client_id`` return only that client's rows (another client's challenge is
``NotFound``). Meters and the decision text are computed from the same day rows the
evaluation reads, so what the trader sees is what the rules judged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.translation import gettext as _

from brokerdesk.core import clock
from brokerdesk.core.errors import NotFound
from brokerdesk.portal.formatting import format_decimal, format_minor
from brokerdesk.propfirm import rules as rulebook
from brokerdesk.propfirm.models import Challenge, Payout, PhaseAccount, PhaseStatus, Product
from brokerdesk.propfirm.services import day_facts


@dataclass(frozen=True)
class ProductView:
    """A product version as the shop and the back office show it."""

    id: UUID
    code: str
    version: int
    name: str
    active: bool
    price: int
    currency: str
    account_size: int
    profit_split_bps: int
    server: str
    platform_group: str
    leverage: int
    phases: list[dict[str, Any]]


@dataclass(frozen=True)
class Meter:
    """One rule's gauge: how much of the allowance is used (or of the target reached)."""

    key: str
    label: str
    value: int
    limit: int
    percent: int  # 0..100, for the bar
    text: str
    tone: str  # success, warning, danger, neutral
    met: bool = False


@dataclass(frozen=True)
class PhaseView:
    """One phase account with its figures and meters."""

    id: UUID
    phase_index: int
    phase_name: str
    funded: bool
    status: str
    server: str
    login: int | None
    account_size: int
    currency: str
    started_at: datetime | None
    deadline: datetime | None
    ended_at: datetime | None
    rule: str
    figures: dict[str, Any]
    decision: str
    balance: int
    equity: int | None
    profit: int
    trading_days: int
    paid_out: int
    reading_at: datetime | None
    meters: list[Meter] = field(default_factory=list)


@dataclass(frozen=True)
class ChallengeView:
    """A challenge with its phases, newest phase first."""

    id: UUID
    client_id: str
    product_id: UUID
    product_name: str
    product_code: str
    product_version: int
    status: str
    price: int
    currency: str
    profit_split_bps: int
    created_at: datetime
    phases: list[PhaseView]

    @property
    def current(self) -> PhaseView | None:
        """The phase being traded (or the last one)."""
        return self.phases[0] if self.phases else None


@dataclass(frozen=True)
class PayoutView:
    """A profit-split payout."""

    id: UUID
    challenge_id: UUID
    login: int | None
    currency: str
    profit: int
    trader_share: int
    firm_share: int
    split_bps: int
    state: str
    withdrawal_id: UUID | None
    error: str
    created_at: datetime


# --- formatting --------------------------------------------------------------------------------


def percent_text(part: int, whole: int) -> str:
    """``part`` of ``whole`` as a percentage with one decimal (5.3), localised."""
    if whole <= 0:
        return "0"
    value = (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"), ROUND_HALF_UP)
    return format_decimal(value, 1)


def bps_text(bps: int | None) -> str:
    """Basis points as a percentage: 500 → 5, 250 → 2.5."""
    if bps is None:
        return "—"
    value = Decimal(bps) / 100
    places = 0 if bps % 100 == 0 else (1 if bps % 10 == 0 else 2)
    return format_decimal(value, places)


def _clock_text(msc: int) -> str:
    return datetime.fromtimestamp(msc / 1000, tz=UTC).strftime("%H:%M") if msc else "—"


def describe_decision(rule: str, figures: dict[str, Any], currency: str) -> str:
    """The rule and figures that ended a phase, as a sentence (translated)."""
    if not rule:
        return ""
    money = {
        k: format_minor(int(v), currency)
        for k, v in figures.items()
        if k in ("equity", "reference", "loss", "limit", "profit", "target", "size")
        and v is not None
    }
    size = int(figures.get("size") or 0)
    if rule == "daily_loss":
        return _(
            "Daily loss %(loss_pct)s%% exceeds %(limit_pct)s%%: equity %(equity)s at %(time)s "
            "vs day start %(reference)s."
        ) % {
            "loss_pct": percent_text(int(figures["loss"]), size),
            "limit_pct": bps_text(figures.get("limit_bps")),
            "equity": money["equity"],
            "time": _clock_text(int(figures.get("at_msc", 0))),
            "reference": money["reference"],
        }
    if rule in ("max_loss", "trailing_loss"):
        template = (
            _(
                "Trailing loss %(loss_pct)s%% exceeds %(limit_pct)s%%: equity %(equity)s at "
                "%(time)s vs high-water mark %(reference)s."
            )
            if rule == "trailing_loss"
            else _(
                "Maximum loss %(loss_pct)s%% exceeds %(limit_pct)s%%: equity %(equity)s at "
                "%(time)s vs starting balance %(reference)s."
            )
        )
        return template % {
            "loss_pct": percent_text(int(figures["loss"]), size),
            "limit_pct": bps_text(figures.get("limit_bps")),
            "equity": money["equity"],
            "time": _clock_text(int(figures.get("at_msc", 0))),
            "reference": money["reference"],
        }
    if rule == "time_limit":
        return _(
            "The time limit of %(days)s days ran out with a profit of %(profit)s "
            "(target %(target)s)."
        ) % {
            "days": figures.get("days") or "—",
            "profit": money.get("profit", "—"),
            "target": money.get("target", "—"),
        }
    if rule == "profit_target":
        return _("Profit target reached: %(profit)s of %(target)s in %(days)s trading days.") % {
            "profit": money.get("profit", "—"),
            "target": money.get("target", "—"),
            "days": figures.get("trading_days", 0),
        }
    if rule == "manual":
        return _("Decided by our dealing desk: %(reason)s") % {"reason": figures.get("reason", "")}
    return rule


# --- meters ------------------------------------------------------------------------------------


def _tone(percent: int) -> str:
    return "danger" if percent >= 90 else "warning" if percent >= 60 else "success"


def _ratio(value: int, limit: int) -> int:
    if limit <= 0:
        return 0
    return max(0, min(100, value * 100 // limit))


def meters(account: PhaseAccount, phase: rulebook.PhaseRules, currency: str) -> list[Meter]:
    """Gauges for every rule of the phase, from the evaluation's own day rows."""
    size = account.account_size
    facts = day_facts(account)
    state = rulebook.progress(size, facts)
    equity = account.last_equity if account.last_equity is not None else state.balance
    row_today = bool(facts) and facts[-1].day == clock.now().astimezone(UTC).date()
    lowest_today = equity
    if row_today and state.today_min_equity is not None:
        lowest_today = min(equity, state.today_min_equity)
    day_start = state.day_start if row_today else state.balance
    result: list[Meter] = []
    daily = phase.limit(phase.daily_loss_bps, size)
    if daily is not None:
        used = max(0, day_start - lowest_today)
        pct = _ratio(used, daily)
        result.append(
            Meter("daily_loss", _("Daily loss"), used, daily, pct,
                  _("%(used)s of %(limit)s today") % {"used": format_minor(used, currency),
                                                      "limit": format_minor(daily, currency)},
                  _tone(pct))
        )  # fmt: skip
    overall = phase.limit(phase.max_loss_bps, size)
    if overall is not None:
        reference = state.high_water if phase.max_loss_mode == "trailing" else size
        used = max(0, reference - equity)
        pct = _ratio(used, overall)
        label = _("Trailing loss") if phase.max_loss_mode == "trailing" else _("Maximum loss")
        result.append(
            Meter("max_loss", label, used, overall, pct,
                  _("%(used)s of %(limit)s") % {"used": format_minor(used, currency),
                                                "limit": format_minor(overall, currency)},
                  _tone(pct))
        )  # fmt: skip
    target = phase.limit(phase.profit_target_bps, size)
    if target is not None and not phase.funded:
        reached = max(0, state.profit)
        pct = _ratio(reached, target)
        result.append(
            Meter("profit_target", _("Profit target"), reached, target, pct,
                  _("%(profit)s of %(target)s") % {"profit": format_minor(reached, currency),
                                                   "target": format_minor(target, currency)},
                  "success" if pct >= 100 else "neutral", met=state.profit >= target)
        )  # fmt: skip
    if phase.min_trading_days:
        days = state.trading_days
        pct = _ratio(days, phase.min_trading_days)
        result.append(
            Meter("trading_days", _("Trading days"), days, phase.min_trading_days, pct,
                  _("%(days)s of %(minimum)s days") % {"days": days,
                                                       "minimum": phase.min_trading_days},
                  "success" if days >= phase.min_trading_days else "neutral",
                  met=days >= phase.min_trading_days)
        )  # fmt: skip
    if phase.consistency_bps is not None:
        ok = rulebook.consistency_ok(phase, facts, state.profit)
        share = state.best_day * 100 // state.profit if state.profit > 0 else 0
        result.append(
            Meter("consistency", _("Consistency"), share, phase.consistency_bps // 100,
                  min(100, share),
                  _("Best day %(share)s%% of profit (at most %(limit)s%%)")
                  % {"share": share, "limit": bps_text(phase.consistency_bps)},
                  "success" if ok else "warning", met=ok)
        )  # fmt: skip
    if account.deadline is not None and account.started_at is not None:
        total = max(1, int((account.deadline - account.started_at).total_seconds()))
        spent = int((clock.now() - account.started_at).total_seconds())
        pct = _ratio(spent, total)
        left = max(0, (account.deadline - clock.now()).days)
        result.append(
            Meter("time_limit", _("Time"), spent, total, pct,
                  _("%(days)s days left") % {"days": left}, _tone(pct))
        )  # fmt: skip
    return result


# --- views -------------------------------------------------------------------------------------


def _product_view(p: Product) -> ProductView:
    return ProductView(
        p.id, p.code, p.version, p.name, p.active, p.price, p.currency, p.account_size,
        p.profit_split_bps, p.server, p.platform_group, p.leverage, list(p.phases),
    )  # fmt: skip


def products(*, active_only: bool = True) -> list[ProductView]:
    """Products on sale (or every version, for the back office), cheapest first."""
    rows = Product.objects.all()
    if active_only:
        rows = rows.filter(active=True)
    return [_product_view(p) for p in rows.order_by("price", "code", "-version")]


def product(product_id: UUID | str) -> ProductView:
    """One product version, or ``NotFound``."""
    try:
        row = Product.objects.filter(pk=product_id).first()
    except (ValueError, DjangoValidationError):
        row = None
    if row is None:
        raise NotFound("No such product.", code="product_not_found", field="product_id")
    return _product_view(row)


def _phase_view(account: PhaseAccount, challenge: Challenge, *, with_meters: bool) -> PhaseView:
    phases = rulebook.parse_phases(challenge.product.phases)
    phase = phases[account.phase_index]
    state = rulebook.progress(account.account_size, day_facts(account))
    currency = challenge.currency
    return PhaseView(
        id=account.id,
        phase_index=account.phase_index,
        phase_name=account.phase_name,
        funded=account.funded,
        status=account.status,
        server=account.server,
        login=account.login,
        account_size=account.account_size,
        currency=currency,
        started_at=account.started_at,
        deadline=account.deadline,
        ended_at=account.ended_at,
        rule=account.rule,
        figures=dict(account.figures),
        decision=describe_decision(account.rule, account.figures, currency),
        balance=state.balance,
        equity=account.last_equity,
        profit=state.profit - account.paid_out,
        trading_days=state.trading_days,
        paid_out=account.paid_out,
        reading_at=(
            datetime.fromtimestamp(account.last_reading_msc / 1000, tz=UTC)
            if account.last_reading_msc
            else None
        ),
        meters=(
            meters(account, phase, currency)
            if with_meters and account.status == PhaseStatus.ACTIVE
            else []
        ),
    )


def _challenge_view(challenge: Challenge, *, with_meters: bool = True) -> ChallengeView:
    accounts = sorted(challenge.accounts.all(), key=lambda a: -a.phase_index)
    return ChallengeView(
        id=challenge.id,
        client_id=challenge.client_id,
        product_id=challenge.product_id,
        product_name=challenge.product.name,
        product_code=challenge.product.code,
        product_version=challenge.product.version,
        status=challenge.status,
        price=challenge.price,
        currency=challenge.currency,
        profit_split_bps=challenge.product.profit_split_bps,
        created_at=challenge.created_at,
        phases=[_phase_view(a, challenge, with_meters=with_meters) for a in accounts],
    )


def challenges_of(client_id: UUID | str) -> list[ChallengeView]:
    """The client's challenges, newest first, with meters."""
    rows = (
        Challenge.objects.filter(client_id=str(client_id))
        .select_related("product")
        .prefetch_related("accounts")
        .order_by("-created_at")
    )
    return [_challenge_view(c) for c in rows]


def challenge_of(client_id: UUID | str, challenge_id: UUID | str) -> ChallengeView:
    """One of the client's challenges; ``NotFound`` when it is not theirs."""
    try:
        row = (
            Challenge.objects.filter(pk=challenge_id, client_id=str(client_id))
            .select_related("product")
            .first()
        )
    except (ValueError, DjangoValidationError):
        row = None
    if row is None:
        raise NotFound("No such challenge.", code="challenge_not_found", field="challenge_id")
    return _challenge_view(row)


def challenge(challenge_id: UUID | str) -> ChallengeView:
    """Any challenge (staff)."""
    try:
        row = Challenge.objects.filter(pk=challenge_id).select_related("product").first()
    except (ValueError, DjangoValidationError):
        row = None
    if row is None:
        raise NotFound("No such challenge.", code="challenge_not_found", field="challenge_id")
    return _challenge_view(row)


def all_challenges(*, status: str | None = None, limit: int = 200) -> list[ChallengeView]:
    """Challenges for the back office, newest first (meters included)."""
    rows = Challenge.objects.select_related("product").prefetch_related("accounts")
    if status:
        rows = rows.filter(status=status)
    return [_challenge_view(c) for c in rows.order_by("-created_at")[:limit]]


def payouts_of(client_id: UUID | str) -> list[PayoutView]:
    """The client's payouts, newest first."""
    rows = (
        Payout.objects.filter(client_id=str(client_id))
        .select_related("account")
        .order_by("-created_at")
    )
    return [
        PayoutView(
            p.id,
            p.account.challenge_id,
            p.account.login,
            p.currency,
            p.profit,
            p.trader_share,
            p.firm_share,
            p.split_bps,
            p.state,
            p.withdrawal_id,
            p.error,
            p.created_at,
        )
        for p in rows
    ]


@dataclass(frozen=True)
class CorrectionView:
    """A dealer correction of a challenge deal and what the re-evaluation made of it."""

    id: int
    challenge_id: UUID
    account_id: UUID
    phase: str
    server: str
    login: int | None
    deal: int
    version_msc: int
    change: str
    pnl_before: int | None
    pnl_after: int | None
    status: str
    outcome: str
    verdict: dict[str, Any]
    review: bool
    reviewed_by: str
    reviewed_at: datetime | None
    review_note: str
    at: datetime
    client_id: str = ""
    product_name: str = ""
    currency: str = ""
    decided: str = ""  # the sentence of the decision the phase holds ("" while undecided)
    corrected: str = ""  # the corrected verdict as a sentence ("" when nothing is met)


def corrections(
    *, to_review: bool = False, reviewed: bool = False, limit: int = 200
) -> list[CorrectionView]:
    """Dealer corrections of challenge deals, newest first; ``to_review``: only those flagged
    for staff and not yet resolved (``services.resolve_correction_review``); ``reviewed``: only
    the resolved ones, the most recently resolved first."""
    from brokerdesk.propfirm.models import PhaseDealCorrection

    rows = PhaseDealCorrection.objects.select_related("account__challenge__product").order_by(
        "-at", "-pk"
    )
    if to_review:
        rows = rows.filter(review=True, reviewed_at__isnull=True)
    if reviewed:
        rows = rows.filter(reviewed_at__isnull=False).order_by("-reviewed_at", "-pk")
    return [
        CorrectionView(
            id=r.pk,
            challenge_id=r.account.challenge_id,
            account_id=r.account_id,
            phase=r.account.phase_name,
            server=r.account.server,
            login=r.account.login,
            deal=r.deal,
            version_msc=r.version_msc,
            change=r.change,
            pnl_before=r.pnl_before,
            pnl_after=r.pnl_after,
            status=r.status,
            outcome=r.outcome,
            verdict=dict(r.verdict),
            review=r.review,
            reviewed_by=r.reviewed_by,
            reviewed_at=r.reviewed_at,
            review_note=r.review_note,
            at=r.at,
            client_id=r.account.challenge.client_id,
            product_name=r.account.challenge.product.name,
            currency=r.account.challenge.currency,
            decided=describe_decision(
                r.account.rule, dict(r.account.figures), r.account.challenge.currency
            ),
            corrected=describe_decision(
                str(r.verdict.get("rule") or ""),
                dict(r.verdict.get("figures") or {}),
                r.account.challenge.currency,
            ),
        )
        for r in rows[:limit]
    ]


def corrections_to_review_count() -> int:
    """How many flagged corrections wait for staff (the back office's badge)."""
    from brokerdesk.propfirm.models import PhaseDealCorrection

    return PhaseDealCorrection.objects.filter(review=True, reviewed_at__isnull=True).count()
