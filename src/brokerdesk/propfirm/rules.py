"""Challenge rules and the evaluation: a pure function from a phase's day rows to a verdict.

Thresholds are basis points of the account size (500 = 5 %), turned into minor units by
integer division (rounded down). Definitions, per phase:

* **daily loss**: for every server day, ``day start - lowest equity reading of the day``,
  where *day start* is the balance at the start of the day (the account size plus the realised
  P/L of the earlier days, minus profit paid out that day). A breach is a loss *greater* than
  the limit; exactly the limit is still allowed.
* **overall loss**, *static*: ``account size - lowest equity``; *trailing*:
  ``high-water mark - lowest equity``, the high-water mark being the highest end-of-day balance
  or equity reading of the days before (it moves at each day start, never within a day).
* **profit target**: realised profit (closed deals) at or above the target.
* **minimum trading days**: days with at least one closing trade deal.
* **consistency**: no single day's realised profit above the given share of the total
  profit; it holds back a pass (the trader keeps trading), it is not a breach.
* **time limit**: the phase fails when its deadline passes before it passes.

Every input is an order-free aggregate (sums over deals stored once, minima and maxima of
readings), so the same events in any order give the same verdict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from brokerdesk.core.errors import ValidationError

BPS = 10_000
MAX_LOSS_MODES = ("static", "trailing")


@dataclass(frozen=True)
class PhaseRules:
    """The rules of one phase (bps of the account size; days are server days)."""

    name: str
    daily_loss_bps: int | None = 500
    max_loss_bps: int | None = 1000
    max_loss_mode: str = "static"
    profit_target_bps: int | None = None
    min_trading_days: int = 0
    time_limit_days: int | None = None
    consistency_bps: int | None = None
    funded: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON form, as stored on the product."""
        return {
            "name": self.name,
            "daily_loss_bps": self.daily_loss_bps,
            "max_loss_bps": self.max_loss_bps,
            "max_loss_mode": self.max_loss_mode,
            "profit_target_bps": self.profit_target_bps,
            "min_trading_days": self.min_trading_days,
            "time_limit_days": self.time_limit_days,
            "consistency_bps": self.consistency_bps,
            "funded": self.funded,
        }

    def limit(self, bps: int | None, size: int) -> int | None:
        """``bps`` of ``size`` in minor units (rounded down), or None when the rule is off."""
        return None if bps is None else size * bps // BPS


def _optional_int(data: Mapping[str, Any], key: str, where: str, low: int, high: int) -> int | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{where}: {key} must be a whole number.", field=f"{where}.{key}")
    if not low <= value <= high:
        raise ValidationError(
            f"{where}: {key} must be between {low} and {high}.", field=f"{where}.{key}"
        )
    return value


def parse_phases(raw: Iterable[Mapping[str, Any]]) -> list[PhaseRules]:
    """Validate a product's phases; the last one is funded, the others need a profit target."""
    items = list(raw)
    if not items:
        raise ValidationError("A product needs at least one phase.", field="phases")
    if len(items) > 5:
        raise ValidationError("A product has at most five phases.", field="phases")
    phases: list[PhaseRules] = []
    for index, data in enumerate(items):
        where = f"phases[{index}]"
        name = str(data.get("name", "")).strip()
        if not name or len(name) > 64:
            raise ValidationError(f"{where}: a name of 1 to 64 characters is required.",
                                  field=f"{where}.name")  # fmt: skip
        mode = str(data.get("max_loss_mode") or "static")
        if mode not in MAX_LOSS_MODES:
            raise ValidationError(
                f"{where}: max_loss_mode must be static or trailing.",
                field=f"{where}.max_loss_mode",
            )
        funded = index == len(items) - 1
        target = _optional_int(data, "profit_target_bps", where, 1, BPS * 10)
        if not funded and target is None:
            raise ValidationError(
                f"{where}: every phase before the funded one needs a profit target.",
                field=f"{where}.profit_target_bps",
            )
        if funded and target is not None:
            raise ValidationError(
                f"{where}: the funded phase has no profit target.",
                field=f"{where}.profit_target_bps",
            )
        phases.append(
            PhaseRules(
                name=name,
                daily_loss_bps=_optional_int(data, "daily_loss_bps", where, 1, BPS),
                max_loss_bps=_optional_int(data, "max_loss_bps", where, 1, BPS),
                max_loss_mode=mode,
                profit_target_bps=target,
                min_trading_days=_optional_int(data, "min_trading_days", where, 0, 365) or 0,
                time_limit_days=_optional_int(data, "time_limit_days", where, 1, 3650),
                consistency_bps=_optional_int(data, "consistency_bps", where, 1, BPS),
                funded=funded,
            )
        )
    return phases


@dataclass(frozen=True)
class DayFacts:
    """One server day of a phase account, as the evaluation reads it."""

    day: date
    pnl: int = 0
    trades: int = 0
    min_equity: int | None = None
    min_equity_msc: int = 0
    max_equity: int | None = None
    max_equity_msc: int = 0
    paid_out: int = 0


@dataclass(frozen=True)
class Verdict:
    """What the rules say now: ``breach`` (rule, figures), ``pass``, or ``none``."""

    outcome: str  # breach | pass | none
    rule: str = ""
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Progress:
    """Where a phase stands against each rule (minor units), for meters and the verdict."""

    balance: int
    profit: int
    trading_days: int
    best_day: int
    day_start: int
    high_water: int
    today_min_equity: int | None


def progress(size: int, days: Iterable[DayFacts]) -> Progress:
    """Balance, profit, trading days and today's references from the day rows."""
    ordered = sorted(days, key=lambda d: d.day)
    start = size
    high = size
    best = 0
    traded = 0
    last_min: int | None = None
    day_start = size
    for index, d in enumerate(ordered):
        day_start = start - d.paid_out
        high -= d.paid_out
        end = day_start + d.pnl
        traded += d.trades > 0
        best = max(best, d.pnl)
        if index < len(ordered) - 1:
            high = max(high, end, d.max_equity if d.max_equity is not None else end)
        last_min = d.min_equity
        start = end
    return Progress(
        balance=start,
        profit=start - size + sum(d.paid_out for d in ordered),
        trading_days=traded,
        best_day=best,
        day_start=day_start,
        high_water=high,
        today_min_equity=last_min,
    )


def evaluate(
    rules: PhaseRules,
    size: int,
    days: Iterable[DayFacts],
    *,
    now: datetime,
    deadline: datetime | None,
) -> Verdict:
    """The verdict over all day rows: the first breach in time order, else pass, else none."""
    ordered = sorted(days, key=lambda d: d.day)
    daily_limit = rules.limit(rules.daily_loss_bps, size)
    max_limit = rules.limit(rules.max_loss_bps, size)
    start = size
    high = size
    for d in ordered:
        day_start = start - d.paid_out
        high -= d.paid_out
        if d.min_equity is not None:
            breach = _loss_breach(rules, size, d, day_start, high, daily_limit, max_limit)
            if breach is not None:
                return breach
        end = day_start + d.pnl
        high = max(high, end, d.max_equity if d.max_equity is not None else end)
        start = end
    paid = sum(d.paid_out for d in ordered)
    profit = start - size + paid
    if _target_met(rules, size, ordered, profit):
        return Verdict(
            "pass",
            "profit_target",
            {
                "profit": profit,
                "target": rules.limit(rules.profit_target_bps, size),
                "trading_days": sum(1 for d in ordered if d.trades > 0),
                "size": size,
            },
        )
    if deadline is not None and now >= deadline:
        return Verdict(
            "breach",
            "time_limit",
            {
                "deadline_msc": int(deadline.timestamp() * 1000),
                "days": rules.time_limit_days,
                "profit": profit,
                "target": rules.limit(rules.profit_target_bps, size),
                "size": size,
            },
        )
    return Verdict("none")


def _loss_breach(
    rules: PhaseRules,
    size: int,
    d: DayFacts,
    day_start: int,
    high: int,
    daily_limit: int | None,
    max_limit: int | None,
) -> Verdict | None:
    equity = d.min_equity
    assert equity is not None
    if daily_limit is not None and day_start - equity > daily_limit:
        return Verdict(
            "breach",
            "daily_loss",
            {
                "loss": day_start - equity,
                "limit": daily_limit,
                "limit_bps": rules.daily_loss_bps,
                "equity": equity,
                "at_msc": d.min_equity_msc,
                "reference": day_start,
                "size": size,
            },
        )
    if max_limit is not None:
        reference = high if rules.max_loss_mode == "trailing" else size
        if reference - equity > max_limit:
            return Verdict(
                "breach",
                "trailing_loss" if rules.max_loss_mode == "trailing" else "max_loss",
                {
                    "loss": reference - equity,
                    "limit": max_limit,
                    "limit_bps": rules.max_loss_bps,
                    "equity": equity,
                    "at_msc": d.min_equity_msc,
                    "reference": reference,
                    "size": size,
                },
            )
    return None


def consistency_ok(rules: PhaseRules, days: Iterable[DayFacts], profit: int) -> bool:
    """No single day's realised profit above ``consistency_bps`` of the total profit."""
    if rules.consistency_bps is None:
        return True
    if profit <= 0:
        return False
    best = max((d.pnl for d in days), default=0)
    return best * BPS <= rules.consistency_bps * profit


def _target_met(rules: PhaseRules, size: int, days: list[DayFacts], profit: int) -> bool:
    target = rules.limit(rules.profit_target_bps, size)
    if target is None or rules.funded:
        return False
    traded = sum(1 for d in days if d.trades > 0)
    return (
        profit >= target
        and traded >= rules.min_trading_days
        and consistency_ok(rules, days, profit)
    )
