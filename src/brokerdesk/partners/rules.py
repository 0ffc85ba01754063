"""Commission rules as data, and the pure calculator over them.

A plan version's ``rules`` JSON is parsed into ``PlanRules`` (``parse_rules`` names the field
and rule any bad input breaks). The calculator has no database access:

* ``check_filters``: the first eligibility rule a deal breaks (instrument, account group,
  country, KYC state, the compliance policy, minimum volume, minimum holding time), or None;
* ``compute_pool``: the commission a deal produces (the *pool*): per-lot rebates by symbol
  group, spread share, revenue share net of bonuses and fees, any mix of them (hybrid), times
  the volume tier's multiplier;
* ``split_levels``: the pool shared between the direct IB (level 0) and its uplines (level k
  earns ``overrides[k-1]`` basis points of the pool); each share is rounded down and the
  dropped fraction reported, so the shares never add up to more than the pool;
* ``split_holdback``: the part of an amount held back until the release date;
* ``cpa_due``: whether a client's CPA is earned.

Money is integer minor units; exact intermediate values are ``Fraction`` and every rounding is
down, with the remainder in millionths of a minor unit (``remainder_ppm``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from fnmatch import fnmatchcase
from fractions import Fraction
from typing import Any

from brokerdesk.core.errors import ValidationError
from brokerdesk.partners.deals import ClosedDeal

BPS = 10_000
LOT = 10_000  # MT5 volume units per lot
PPM = 1_000_000
COMPONENT_TYPES = ("rebate", "spread_share", "revenue_share", "cpa")
CPA_MODES = ("deposit", "volume", "deposit_and_volume", "deposit_or_volume")


@dataclass(frozen=True)
class Filters:
    """Eligibility filters: a deal that fails one earns nothing (and is recorded as excluded)."""

    symbols_include: tuple[str, ...] = ()
    symbols_exclude: tuple[str, ...] = ()
    groups_include: tuple[str, ...] = ()
    groups_exclude: tuple[str, ...] = ()
    countries_include: tuple[str, ...] = ()
    countries_exclude: tuple[str, ...] = ()
    kyc_states: tuple[str, ...] = ("approved",)
    require_policy: bool = True  # compliance ``may(client, "earn_commission")``
    min_volume: int = 0  # per deal, MT5 units
    min_holding_seconds: int = 0


@dataclass(frozen=True)
class Component:
    """One part of a plan: ``rebate``, ``spread_share``, ``revenue_share`` or ``cpa``."""

    type: str
    rates: dict[str, int] = field(default_factory=dict)  # rebate / spread markup: per lot
    share_bps: int = 0
    include_commission: bool = True
    fee_per_lot: int = 0
    amount: int = 0  # CPA
    mode: str = "deposit"
    min_first_deposit: int = 0
    min_volume: int = 0


@dataclass(frozen=True)
class Tier:
    """From ``min_volume`` (the IB's own clients' volume this period) on, pay ``multiplier_bps``."""

    min_volume: int
    multiplier_bps: int


@dataclass(frozen=True)
class PlanRules:
    """The parsed rules of one plan version."""

    components: tuple[Component, ...]
    symbol_groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    filters: Filters = Filters()
    tiers: tuple[Tier, ...] = ()
    overrides: tuple[int, ...] = ()  # bps of the pool for level 1, 2, …
    holdback_bps: int = 0
    holdback_days: int = 0

    @property
    def override_levels(self) -> int:
        """How many upline levels share the pool."""
        return len(self.overrides)

    @property
    def cpa(self) -> Component | None:
        """The CPA component, if any."""
        return next((c for c in self.components if c.type == "cpa"), None)


def _err(path: str, message: str, code: str = "invalid_rule") -> ValidationError:
    return ValidationError(f"{path}: {message}", code=code, field=path)


def _int(
    data: dict[str, Any],
    key: str,
    path: str,
    *,
    default: int = 0,
    lo: int = 0,
    hi: int | None = None,
) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _err(f"{path}.{key}", "must be an integer")
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise _err(f"{path}.{key}", f"must be {bound}")
    return value


def _strs(data: dict[str, Any], key: str, path: str, *, upper: bool = True) -> tuple[str, ...]:
    value = data.get(key, ())
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise _err(f"{path}.{key}", "must be a list of strings")
    if not all(isinstance(v, str) and v for v in value):
        raise _err(f"{path}.{key}", "must be a list of non-empty strings")
    return tuple(v.upper() if upper else v for v in value)


def _rates(data: dict[str, Any], key: str, path: str, groups: dict[str, Any]) -> dict[str, int]:
    value = data.get(key, {})
    if not isinstance(value, dict) or not value:
        raise _err(f"{path}.{key}", "must map symbol groups (or '*') to minor units per lot")
    out = {}
    for group, rate in value.items():
        if group != "*" and group not in groups:
            raise _err(f"{path}.{key}.{group}", "is not a symbol group of the plan")
        if isinstance(rate, bool) or not isinstance(rate, int) or rate < 0:
            raise _err(f"{path}.{key}.{group}", "must be a non-negative integer")
        out[str(group)] = rate
    return out


def parse_rules(data: Any) -> PlanRules:
    """Validate and parse a plan version's rules; ``ValidationError`` names the bad field."""
    if not isinstance(data, dict):
        raise _err("rules", "must be an object")
    known = {
        "components",
        "symbol_groups",
        "filters",
        "tiers",
        "overrides",
        "holdback_bps",
        "holdback_days",
    }
    for key in data:
        if key not in known:
            raise _err(f"rules.{key}", "is not a known setting")
    raw_groups = data.get("symbol_groups", {})
    if not isinstance(raw_groups, dict):
        raise _err("rules.symbol_groups", "must map group names to symbol patterns")
    groups = {str(name): _strs(raw_groups, name, "rules.symbol_groups") for name in raw_groups}
    raw_components = data.get("components")
    if not isinstance(raw_components, list) or not raw_components:
        raise _err("rules.components", "must be a non-empty list")
    components = []
    for i, raw in enumerate(raw_components):
        path = f"rules.components[{i}]"
        if not isinstance(raw, dict) or raw.get("type") not in COMPONENT_TYPES:
            raise _err(f"{path}.type", f"must be one of {', '.join(COMPONENT_TYPES)}")
        kind = raw["type"]
        if kind == "rebate":
            components.append(Component(kind, rates=_rates(raw, "rates", path, groups)))
        elif kind == "spread_share":
            components.append(
                Component(
                    kind,
                    rates=_rates(raw, "markup_per_lot", path, groups),
                    share_bps=_int(raw, "share_bps", path, hi=BPS),
                )
            )
        elif kind == "revenue_share":
            include = raw.get("include_commission", True)
            if not isinstance(include, bool):
                raise _err(f"{path}.include_commission", "must be true or false")
            components.append(
                Component(
                    kind,
                    share_bps=_int(raw, "share_bps", path, hi=BPS),
                    include_commission=include,
                    fee_per_lot=_int(raw, "fee_per_lot", path),
                )
            )
        else:
            mode = raw.get("mode", "deposit")
            if mode not in CPA_MODES:
                raise _err(f"{path}.mode", f"must be one of {', '.join(CPA_MODES)}")
            components.append(
                Component(
                    kind,
                    amount=_int(raw, "amount", path, lo=1),
                    mode=mode,
                    min_first_deposit=_int(raw, "min_first_deposit", path),
                    min_volume=_int(raw, "min_volume", path),
                )
            )
    if sum(1 for c in components if c.type == "cpa") > 1:
        raise _err("rules.components", "may hold at most one cpa component")
    raw_filters = data.get("filters", {})
    if not isinstance(raw_filters, dict):
        raise _err("rules.filters", "must be an object")
    require_policy = raw_filters.get("require_policy", True)
    if not isinstance(require_policy, bool):
        raise _err("rules.filters.require_policy", "must be true or false")
    fp = "rules.filters"
    filters = Filters(
        symbols_include=_strs(raw_filters, "symbols_include", fp),
        symbols_exclude=_strs(raw_filters, "symbols_exclude", fp),
        groups_include=_strs(raw_filters, "groups_include", fp, upper=False),
        groups_exclude=_strs(raw_filters, "groups_exclude", fp, upper=False),
        countries_include=_strs(raw_filters, "countries_include", fp),
        countries_exclude=_strs(raw_filters, "countries_exclude", fp),
        kyc_states=_strs(raw_filters, "kyc_states", fp, upper=False)
        if "kyc_states" in raw_filters
        else ("approved",),
        require_policy=require_policy,
        min_volume=_int(raw_filters, "min_volume", fp),
        min_holding_seconds=_int(raw_filters, "min_holding_seconds", fp),
    )
    raw_tiers = data.get("tiers", [])
    if not isinstance(raw_tiers, list):
        raise _err("rules.tiers", "must be a list")
    tiers = tuple(
        Tier(
            _int(t, "min_volume", f"rules.tiers[{i}]"),
            _int(t, "multiplier_bps", f"rules.tiers[{i}]", hi=10 * BPS),
        )
        if isinstance(t, dict)
        else Tier(-1, 0)
        for i, t in enumerate(raw_tiers)
    )
    if any(t.min_volume < 0 for t in tiers):
        raise _err("rules.tiers", "each tier is an object with min_volume and multiplier_bps")
    if [t.min_volume for t in tiers] != sorted({t.min_volume for t in tiers}):
        raise _err("rules.tiers", "min_volume must increase strictly from tier to tier")
    raw_overrides = data.get("overrides", [])
    if not isinstance(raw_overrides, list) or not all(
        isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= BPS for b in raw_overrides
    ):
        raise _err("rules.overrides", "must be a list of basis points (0-10000) per level")
    if sum(raw_overrides) > BPS:
        raise _err("rules.overrides", "the levels' shares add up to more than the pool")
    return PlanRules(
        components=tuple(components),
        symbol_groups=groups,
        filters=filters,
        tiers=tiers,
        overrides=tuple(raw_overrides),
        holdback_bps=_int(data, "holdback_bps", "rules", hi=BPS),
        holdback_days=_int(data, "holdback_days", "rules", hi=3650),
    )


# ---------------------------------------------------------------------------- eligibility


@dataclass(frozen=True)
class ClientFacts:
    """What the filters need to know about the trading client."""

    country: str = ""
    kyc_state: str = ""
    policy_allowed: bool = True
    policy_reason: str = ""


def _matches(value: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(value, p) for p in patterns)


def check_client(filters: Filters, facts: ClientFacts) -> tuple[str, str] | None:
    """The first client filter (country, KYC state, compliance policy) the client fails."""
    country = facts.country.upper()
    if filters.countries_include and country not in filters.countries_include:
        return "country_not_included", f"client country {country or '?'} is not eligible"
    if filters.countries_exclude and country in filters.countries_exclude:
        return "country_excluded", f"client country {country} is excluded"
    if filters.kyc_states and facts.kyc_state not in filters.kyc_states:
        return "kyc_state", f"client KYC state is {facts.kyc_state or 'unknown'}"
    if filters.require_policy and not facts.policy_allowed:
        return "policy", facts.policy_reason or "compliance does not allow commission"
    return None


def check_symbol(symbol: str, filters: Filters) -> tuple[str, str] | None:
    """The first instrument filter a symbol fails (the same for every deal in it)."""
    upper = symbol.upper()
    if filters.symbols_include and not _matches(upper, filters.symbols_include):
        return "symbol_not_included", f"{symbol} is not among {list(filters.symbols_include)}"
    if filters.symbols_exclude and _matches(upper, filters.symbols_exclude):
        return "symbol_excluded", f"{symbol} matches {list(filters.symbols_exclude)}"
    return None


def check_group(group: str, filters: Filters) -> tuple[str, str] | None:
    """The first account-group filter a group fails."""
    if filters.groups_include and not _matches(group, filters.groups_include):
        return "group_not_included", f"group {group!r} is not among the plan's groups"
    if filters.groups_exclude and _matches(group, filters.groups_exclude):
        return "group_excluded", f"group {group!r} is excluded"
    return None


def check_deal(deal: ClosedDeal, filters: Filters) -> tuple[str, str] | None:
    """The first per-deal filter (minimum volume, minimum holding time) the deal fails."""
    if deal.volume < filters.min_volume:
        return "min_volume", f"volume {deal.volume} < minimum {filters.min_volume} (1/10,000 lot)"
    if filters.min_holding_seconds and deal.opened_at is not None:
        held = (deal.closed_at - deal.opened_at).total_seconds()
        if held < filters.min_holding_seconds:
            return (
                "min_holding_time",
                f"held {held:.0f}s < minimum {filters.min_holding_seconds}s",
            )
    return None


def check_filters(deal: ClosedDeal, filters: Filters, facts: ClientFacts) -> tuple[str, str] | None:
    """The first filter the deal breaks, as (rule code, detail), or None when eligible:
    instrument, account group, client, then the deal's own volume and holding time."""
    return (
        check_symbol(deal.symbol, filters)
        or check_group(deal.group, filters)
        or check_client(filters, facts)
        or check_deal(deal, filters)
    )


# ---------------------------------------------------------------------------- the pool


def symbol_group(symbol: str, groups: dict[str, tuple[str, ...]]) -> str:
    """The first group whose patterns match the symbol, or ``*``."""
    upper = symbol.upper()
    for name, patterns in groups.items():
        if _matches(upper, patterns):
            return name
    return "*"


def _rate(rates: dict[str, int], group: str) -> int | None:
    return rates.get(group, rates.get("*"))


def tier_multiplier(tiers: tuple[Tier, ...], period_volume: int) -> int:
    """The multiplier (bps) of the highest tier reached; 10000 without tiers."""
    reached = [t.multiplier_bps for t in tiers if period_volume >= t.min_volume]
    return reached[-1] if reached else BPS


@dataclass(frozen=True)
class Pool:
    """The commission a deal produces, with the working behind it."""

    exact: Fraction
    parts: tuple[dict[str, Any], ...]
    multiplier_bps: int

    @property
    def amount(self) -> int:
        """The pool rounded down to a whole minor unit."""
        return int(self.exact)  # exact >= 0, so int() rounds down


def frac(value: Fraction) -> str:
    """A fraction as text ("7/4"), exact, for the stored working."""
    return f"{value.numerator}/{value.denominator}" if value.denominator != 1 else str(value)


def compute_pool(deal: ClosedDeal, rules: PlanRules, period_volume: int = 0) -> Pool:
    """What a deal produces under the plan's deal components, before the level split."""
    group = symbol_group(deal.symbol, rules.symbol_groups)
    lots = Fraction(deal.volume, LOT)
    parts: list[dict[str, Any]] = []
    total = Fraction(0)
    for c in rules.components:
        if c.type == "rebate":
            rate = _rate(c.rates, group)
            value = lots * (rate or 0)
            parts.append(
                {
                    "type": "rebate",
                    "group": group,
                    "per_lot": rate,
                    "lots": frac(lots),
                    "value": frac(value),
                }
            )
        elif c.type == "spread_share":
            if deal.spread_revenue is not None:
                base = Fraction(max(deal.spread_revenue, 0))
                source = "deal"
            else:
                base = lots * (_rate(c.rates, group) or 0)
                source = "markup_per_lot"
            value = base * c.share_bps / BPS
            parts.append(
                {
                    "type": "spread_share",
                    "group": group,
                    "spread": frac(base),
                    "source": source,
                    "share_bps": c.share_bps,
                    "value": frac(value),
                }
            )
        elif c.type == "revenue_share":
            revenue = -(deal.profit + deal.swap)
            if c.include_commission:
                revenue += -deal.commission - deal.fee
            net = Fraction(revenue) - lots * c.fee_per_lot - deal.bonus_cost
            value = net * c.share_bps / BPS if net > 0 else Fraction(0)
            parts.append(
                {
                    "type": "revenue_share",
                    "gross": revenue,
                    "fees": frac(lots * c.fee_per_lot),
                    "bonus_cost": deal.bonus_cost,
                    "net": frac(net),
                    "share_bps": c.share_bps,
                    "value": frac(value),
                }
            )
        else:
            continue
        total += value
    multiplier = tier_multiplier(rules.tiers, period_volume)
    exact = total * multiplier / BPS
    return Pool(exact=max(exact, Fraction(0)), parts=tuple(parts), multiplier_bps=multiplier)


#: Denominator of an integer pool numerator (``pool_numerator``): the pool is exactly
#: ``numerator / POOL_DEN`` minor units (lots are 1/LOT, rates and the tier multiplier bps).
POOL_DEN = LOT * BPS * BPS


def pool_numerator(
    deal: ClosedDeal, rules: PlanRules, group: str, period_volume: int = 0
) -> tuple[int, int]:
    """``compute_pool`` in integers, without the working: (numerator over ``POOL_DEN``,
    tier multiplier bps). The accrual engine's per-deal path; ``compute_pool`` re-derives the
    working for the evidence."""
    volume = deal.volume
    total = 0  # over LOT * BPS
    for c in rules.components:
        kind = c.type
        if kind == "rebate":
            total += volume * (_rate(c.rates, group) or 0) * BPS
        elif kind == "spread_share":
            if deal.spread_revenue is not None:
                total += max(deal.spread_revenue, 0) * c.share_bps * LOT
            else:
                total += volume * (_rate(c.rates, group) or 0) * c.share_bps
        elif kind == "revenue_share":
            revenue = -(deal.profit + deal.swap)
            if c.include_commission:
                revenue += -deal.commission - deal.fee
            net = revenue * LOT - volume * c.fee_per_lot - deal.bonus_cost * LOT
            if net > 0:
                total += net * c.share_bps
    multiplier = tier_multiplier(rules.tiers, period_volume)
    return max(total * multiplier, 0), multiplier


def split_numerator(
    numerator: int, overrides: tuple[int, ...], levels_present: int
) -> list[tuple[int, int, int, int]]:
    """``split_levels`` of the pool ``numerator / POOL_DEN`` in integers: (level, bps,
    amount, remainder_ppm) per level, each rounded down exactly as ``split_levels``."""
    den = POOL_DEN * BPS
    out = []
    for level, bps in enumerate((BPS - sum(overrides), *overrides)):
        if level > levels_present:
            break
        scaled = numerator * bps
        amount = scaled // den
        out.append((level, bps, amount, (scaled - amount * den) * PPM // den))
    return out


@dataclass(frozen=True)
class Share:
    """One level's share of the pool."""

    level: int
    bps: int
    amount: int
    remainder_ppm: int
    exact: Fraction


def split_levels(pool: Fraction, overrides: tuple[int, ...], levels_present: int) -> list[Share]:
    """Shares of the pool: level k (1..) earns ``overrides[k-1]`` bps when that upline exists;
    the direct IB (level 0) earns the rest of the configured levels' bps. A missing upline's
    share is not paid. Each share is rounded down, so the total never exceeds the pool."""
    direct_bps = BPS - sum(overrides)
    shares = []
    for level, bps in enumerate((direct_bps, *overrides)):
        if level > levels_present:
            break
        exact = pool * bps / BPS
        amount = int(exact)
        shares.append(Share(level, bps, amount, int((exact - amount) * PPM), exact))
    return shares


def split_holdback(amount: int, holdback_bps: int) -> tuple[int, int]:
    """(paid now, held back): the held part is rounded down, so nothing is lost."""
    held = amount * holdback_bps // BPS
    return amount - held, held


def period_start(when: datetime | date) -> date:
    """The tier period (calendar month) a time falls in."""
    return date(when.year, when.month, 1)


def cpa_due(cpa: Component, *, first_deposit: int | None, client_volume: int) -> tuple[bool, str]:
    """Whether the CPA is earned, and a sentence saying why or why not."""
    deposit_ok = first_deposit is not None and first_deposit >= cpa.min_first_deposit
    volume_ok = client_volume >= cpa.min_volume
    dep_text = (
        "no deposit yet"
        if first_deposit is None
        else f"first deposit {first_deposit} vs minimum {cpa.min_first_deposit}"
    )
    vol_text = f"volume {client_volume} vs minimum {cpa.min_volume}"
    if cpa.mode == "deposit":
        return deposit_ok, dep_text
    if cpa.mode == "volume":
        return volume_ok, vol_text
    if cpa.mode == "deposit_and_volume":
        return deposit_ok and volume_ok, f"{dep_text}; {vol_text}"
    return deposit_ok or volume_ok, f"{dep_text}; {vol_text}"
