"""The pure calculator: parsing, filters, pools, level split, holdback (with properties)."""

from __future__ import annotations

from datetime import timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokerdesk.core.errors import ValidationError
from brokerdesk.partners import rules
from brokerdesk.partners.deals import parse_deal_closed
from tests.partners.conftest import REBATE, T0, deal_payload


def deal(**kw):
    return parse_deal_closed(deal_payload(None, at=T0, **kw))


def test_parse_names_the_bad_field():
    with pytest.raises(ValidationError) as err:
        rules.parse_rules(
            {
                "components": [{"type": "rebate", "rates": {"FX": -1}}],
                "symbol_groups": {"FX": ["EURUSD"]},
            }
        )
    assert err.value.field == "rules.components[0].rates.FX"
    with pytest.raises(ValidationError) as err:
        rules.parse_rules({**REBATE, "overrides": [6000, 5000]})
    assert err.value.field == "rules.overrides"


def test_the_parser_tolerates_the_trading_modules_field_names():
    d = parse_deal_closed(
        {
            "server": "s",
            "login": 1,
            "deal": 9,
            "time_msc": 1_700_000_000_000,
            "symbol": "XAUUSD",
            "volume": 0,
            "volume_closed": 2500,
            "storage": -5,
            "profit": 10,
        }
    )
    assert d.key == "s:9" and d.volume == 2500 and d.swap == -5 and d.client_id is None
    assert d.opened_at is None and d.currency == ""


def test_rebate_by_symbol_group_rounds_down():
    parsed = rules.parse_rules(REBATE)
    pool = rules.compute_pool(deal(symbol="XAUUSD", volume=3333), parsed)
    assert pool.exact == Fraction(3333 * 1000, 10_000) and pool.amount == 333


def test_revenue_share_is_net_of_bonus_and_fees_and_never_negative():
    parsed = rules.parse_rules(
        {"components": [{"type": "revenue_share", "share_bps": 5000, "fee_per_lot": 100}]}
    )
    # client lost 25.00, paid 7.00 commission, 0.30 swap; bonus cost 2.00; 1 lot fee 1.00
    pool = rules.compute_pool(deal(bonus_cost=200), parsed)
    assert pool.amount == (2500 + 700 + 30 - 200 - 100) // 2
    assert rules.compute_pool(deal(profit=90_000), parsed).amount == 0


def test_tiers_raise_the_rate_once_the_period_volume_is_reached():
    parsed = rules.parse_rules(
        {
            **REBATE,
            "tiers": [
                {"min_volume": 0, "multiplier_bps": 10_000},
                {"min_volume": 1_000_000, "multiplier_bps": 15_000},
            ],
        }
    )
    assert rules.compute_pool(deal(), parsed, 999_999).amount == 700
    assert rules.compute_pool(deal(), parsed, 1_000_000).amount == 1050


def test_filters_name_the_rule_that_excluded():
    f = rules.parse_rules(
        {
            **REBATE,
            "filters": {
                "symbols_exclude": ["XAU*"],
                "min_holding_seconds": 120,
                "countries_exclude": ["US"],
            },
        }
    ).filters
    ok = rules.ClientFacts(country="CY", kyc_state="approved")
    assert rules.check_filters(deal(symbol="XAUUSD"), f, ok)[0] == "symbol_excluded"
    scalp = deal(position_opened_at=(T0 - timedelta(seconds=30)).isoformat())
    assert rules.check_filters(scalp, f, ok)[0] == "min_holding_time"
    assert rules.check_filters(deal(), f, rules.ClientFacts("US", "approved"))[0] == (
        "country_excluded"
    )
    assert rules.check_filters(deal(), f, rules.ClientFacts("CY", "lead"))[0] == "kyc_state"
    assert rules.check_filters(deal(), f, ok) is None


@given(
    pool=st.fractions(min_value=0, max_value=10**12),
    overrides=st.lists(st.integers(0, 4000), max_size=6).filter(lambda o: sum(o) <= 10_000),
    present=st.integers(0, 8),
)
def test_the_levels_never_share_more_than_the_pool(pool, overrides, present):
    shares = rules.split_levels(pool, tuple(overrides), present)
    assert sum(s.amount for s in shares) <= pool
    assert all(s.amount >= 0 for s in shares)
    assert len(shares) == 1 + min(present, len(overrides))
    for s in shares:  # rounding is down and the remainder is what was dropped
        assert 0 <= s.exact - s.amount < 1
        assert s.remainder_ppm == int((s.exact - s.amount) * 1_000_000)


@given(amount=st.integers(0, 10**12), bps=st.integers(0, 10_000))
def test_a_holdback_splits_an_amount_without_losing_a_unit(amount, bps):
    now, held = rules.split_holdback(amount, bps)
    assert now + held == amount and 0 <= held <= amount


@given(volume=st.integers(0, 10**9), rate=st.integers(0, 10**6))
def test_a_rebate_pool_is_the_exact_value_rounded_down(volume, rate):
    parsed = rules.parse_rules({"components": [{"type": "rebate", "rates": {"*": rate}}]})
    pool = rules.compute_pool(deal(volume=volume), parsed)
    assert pool.amount == volume * rate // 10_000


HYBRID = {
    "symbol_groups": {"FX": ["EUR*", "USD*"], "METALS": ["XAU*"]},
    "components": [
        {"type": "rebate", "rates": {"FX": 700, "METALS": 1000, "*": 300}},
        {"type": "spread_share", "markup_per_lot": {"*": 900}, "share_bps": 3333},
        {"type": "revenue_share", "share_bps": 1234, "fee_per_lot": 77},
    ],
    "tiers": [
        {"min_volume": 0, "multiplier_bps": 10_000},
        {"min_volume": 500_000, "multiplier_bps": 11_750},
    ],
    "overrides": [2000, 1000, 500],
}


@given(
    volume=st.integers(0, 10**8),
    profit=st.integers(-(10**7), 10**7),
    commission=st.integers(-(10**5), 0),
    spread=st.one_of(st.none(), st.integers(-(10**5), 10**6)),
    bonus=st.integers(0, 10**5),
    symbol=st.sampled_from(["EURUSD", "XAUUSD", "US30", "USDJPY"]),
    period_volume=st.integers(0, 10**6),
    present=st.integers(0, 5),
)
def test_the_engines_integer_pool_and_split_equal_the_exact_fractions(
    volume, profit, commission, spread, bonus, symbol, period_volume, present
):
    parsed = rules.parse_rules(HYBRID)
    d = deal(
        volume=volume,
        profit=profit,
        commission=commission,
        spread_revenue=spread,
        bonus_cost=bonus,
        symbol=symbol,
    )
    exact = rules.compute_pool(d, parsed, period_volume)
    group = rules.symbol_group(d.symbol, parsed.symbol_groups)
    numerator, multiplier = rules.pool_numerator(d, parsed, group, period_volume)
    assert Fraction(numerator, rules.POOL_DEN) == exact.exact
    assert multiplier == exact.multiplier_bps
    shares = rules.split_levels(exact.exact, parsed.overrides, present)
    assert rules.split_numerator(numerator, parsed.overrides, present) == [
        (s.level, s.bps, s.amount, s.remainder_ppm) for s in shares
    ]
