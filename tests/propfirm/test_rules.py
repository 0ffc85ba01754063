"""The rules as a pure function: each rule at its boundary, trailing vs static, minimum days,
consistency, time limit, order-freedom, and the exact profit split."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokerdesk.core.errors import ValidationError
from brokerdesk.propfirm.rules import DayFacts, PhaseRules, evaluate, parse_phases
from brokerdesk.propfirm.services import split_profit

SIZE = 10_000_00  # 10,000.00
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
D1, D2, D3 = date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 4)
EVAL = PhaseRules(name="Evaluation", daily_loss_bps=500, max_loss_bps=1000, profit_target_bps=800)


def judge(rules: PhaseRules, *days: DayFacts, deadline: datetime | None = None):  # type: ignore[no-untyped-def]
    return evaluate(rules, SIZE, days, now=NOW, deadline=deadline)


def test_daily_loss_of_exactly_the_limit_is_allowed_and_one_cent_more_breaches():
    at_limit = judge(EVAL, DayFacts(D1, min_equity=SIZE - 500_00, min_equity_msc=1))
    over = judge(EVAL, DayFacts(D1, min_equity=SIZE - 500_01, min_equity_msc=1))

    assert at_limit.outcome == "none"
    assert over.outcome == "breach" and over.rule == "daily_loss"
    assert over.figures["loss"] == 500_01 and over.figures["limit"] == 500_00
    assert over.figures["reference"] == SIZE and over.figures["equity"] == SIZE - 500_01


def test_daily_loss_is_measured_from_the_balance_at_the_start_of_the_day():
    day1 = DayFacts(D1, pnl=200_00, trades=1, min_equity=SIZE)
    ok = judge(EVAL, day1, DayFacts(D2, min_equity=SIZE + 200_00 - 500_00))
    breach = judge(EVAL, day1, DayFacts(D2, min_equity=SIZE + 200_00 - 500_01))

    assert ok.outcome == "none"
    assert breach.rule == "daily_loss" and breach.figures["reference"] == SIZE + 200_00


def test_static_overall_loss_counts_from_the_account_size_across_days():
    days = [
        DayFacts(D1, pnl=-400_00, trades=1, min_equity=SIZE - 400_00),
        DayFacts(D2, pnl=-400_00, trades=1, min_equity=SIZE - 800_00),
    ]
    at_limit = judge(EVAL, *days, DayFacts(D3, min_equity=SIZE - 1000_00))
    over = judge(EVAL, *days, DayFacts(D3, min_equity=SIZE - 1000_01))

    assert at_limit.outcome == "none"
    assert over.rule == "max_loss" and over.figures["loss"] == 1000_01
    assert over.figures["reference"] == SIZE


def test_trailing_loss_follows_the_high_water_mark_where_static_does_not():
    trailing = PhaseRules("Evaluation", daily_loss_bps=None, max_loss_bps=1000,
                          max_loss_mode="trailing", profit_target_bps=5000)  # fmt: skip
    static = PhaseRules("Evaluation", daily_loss_bps=None, max_loss_bps=1000,
                        profit_target_bps=5000)  # fmt: skip
    peak = DayFacts(D1, pnl=1000_00, trades=1, min_equity=SIZE, max_equity=SIZE + 1000_00)
    at_limit = DayFacts(D2, min_equity=SIZE)  # 1,000.00 under the high-water mark
    over = DayFacts(D2, min_equity=SIZE - 1)

    assert judge(trailing, peak, at_limit).outcome == "none"
    verdict = judge(trailing, peak, over)
    assert verdict.rule == "trailing_loss"
    assert verdict.figures["reference"] == SIZE + 1000_00 and verdict.figures["loss"] == 1000_01
    assert judge(static, peak, over).outcome == "none"


def test_the_trailing_mark_includes_the_highest_equity_reading_of_earlier_days():
    trailing = PhaseRules("E", daily_loss_bps=None, max_loss_bps=1000, max_loss_mode="trailing",
                          profit_target_bps=5000)  # fmt: skip
    floating_peak = DayFacts(D1, pnl=0, min_equity=SIZE, max_equity=SIZE + 300_00)

    verdict = judge(trailing, floating_peak, DayFacts(D2, min_equity=SIZE - 700_01))

    assert verdict.rule == "trailing_loss" and verdict.figures["reference"] == SIZE + 300_00


def test_profit_target_passes_at_the_target_and_not_one_cent_before():
    short = judge(EVAL, DayFacts(D1, pnl=799_99, trades=3, min_equity=SIZE))
    reached = judge(EVAL, DayFacts(D1, pnl=800_00, trades=3, min_equity=SIZE))

    assert short.outcome == "none"
    assert reached.outcome == "pass" and reached.rule == "profit_target"
    assert reached.figures["profit"] == 800_00 and reached.figures["target"] == 800_00


def test_minimum_trading_days_hold_back_a_pass_until_enough_days_were_traded():
    rules = PhaseRules("E", profit_target_bps=800, min_trading_days=3)
    two_days = [DayFacts(D1, pnl=500_00, trades=2), DayFacts(D2, pnl=300_00, trades=1)]
    quiet_day = DayFacts(D3, pnl=0, trades=0, min_equity=SIZE + 800_00)

    assert judge(rules, *two_days).outcome == "none"
    assert judge(rules, *two_days, quiet_day).outcome == "none"  # a day without trades
    assert judge(rules, *two_days, DayFacts(D3, pnl=1, trades=1)).outcome == "pass"


def test_consistency_holds_back_a_pass_while_one_day_is_too_large_a_share():
    rules = PhaseRules("E", profit_target_bps=800, consistency_bps=5000)
    lopsided = [DayFacts(D1, pnl=600_00, trades=1), DayFacts(D2, pnl=200_00, trades=1)]
    evened = [*lopsided, DayFacts(D3, pnl=400_00, trades=1)]  # best day 600 of 1,200 = 50 %

    assert judge(rules, *lopsided).outcome == "none"
    assert judge(rules, *evened).outcome == "pass"
    slightly_over = [*lopsided, DayFacts(D3, pnl=399_99, trades=1)]
    assert judge(rules, *slightly_over).outcome == "none"


def test_time_limit_fails_a_phase_whose_deadline_passed_without_the_target():
    rules = PhaseRules("E", profit_target_bps=800, time_limit_days=30)
    day = DayFacts(D1, pnl=100_00, trades=1)

    assert judge(rules, day, deadline=NOW + timedelta(seconds=1)).outcome == "none"
    expired = judge(rules, day, deadline=NOW)
    assert expired.rule == "time_limit" and expired.figures["profit"] == 100_00
    reached = DayFacts(D1, pnl=800_00, trades=1)
    assert judge(rules, reached, deadline=NOW).outcome == "pass"


def test_a_funded_phase_never_passes_and_still_breaches():
    funded = PhaseRules("Funded", daily_loss_bps=500, max_loss_bps=1000, funded=True)

    assert judge(funded, DayFacts(D1, pnl=5000_00, trades=9)).outcome == "none"
    assert judge(funded, DayFacts(D1, min_equity=SIZE - 500_01)).rule == "daily_loss"


def test_profit_paid_out_lowers_the_references_so_it_is_not_a_loss():
    funded = PhaseRules("Funded", daily_loss_bps=500, max_loss_bps=1000, max_loss_mode="trailing",
                        funded=True)  # fmt: skip
    profit_day = DayFacts(D1, pnl=900_00, trades=1, min_equity=SIZE, max_equity=SIZE + 900_00)
    payout_day = DayFacts(D2, min_equity=SIZE, paid_out=900_00)

    assert judge(funded, profit_day, payout_day).outcome == "none"


@given(loss=st.integers(min_value=0, max_value=SIZE), limit_bps=st.integers(1, 10_000))
def test_daily_loss_breaches_exactly_when_the_loss_exceeds_the_limit(loss: int, limit_bps: int):
    rules = PhaseRules("E", daily_loss_bps=limit_bps, max_loss_bps=None, profit_target_bps=800)
    verdict = judge(rules, DayFacts(D1, min_equity=SIZE - loss))

    limit = SIZE * limit_bps // 10_000
    assert (verdict.outcome == "breach") == (loss > limit)


@given(
    pnls=st.lists(st.integers(-300_00, 400_00), min_size=1, max_size=8),
    dips=st.lists(st.integers(0, 700_00), min_size=8, max_size=8),
    seed=st.integers(0, 1000),
)
def test_the_verdict_does_not_depend_on_the_order_the_days_arrive(pnls, dips, seed):  # type: ignore[no-untyped-def]
    days = []
    balance = SIZE
    for i, pnl in enumerate(pnls):
        day = date(2026, 3, 2) + timedelta(days=i)
        days.append(DayFacts(day, pnl=pnl, trades=1, min_equity=balance - dips[i],
                             max_equity=balance + max(pnl, 0)))  # fmt: skip
        balance += pnl
    shuffled = days[:]
    random.Random(seed).shuffle(shuffled)

    assert judge(EVAL, *days) == judge(EVAL, *shuffled)


@given(profit=st.integers(1, 10**12), split=st.integers(0, 10_000))
def test_the_profit_split_adds_up_to_the_cent(profit: int, split: int):
    trader, firm = split_profit(profit, split)

    assert trader + firm == profit
    assert trader == profit * split // 10_000 and firm >= 0


def test_profit_split_example_rounds_the_traders_share_down():
    assert split_profit(1234_57, 8000) == (987_65, 246_92)


@pytest.mark.parametrize(
    ("phases", "field"),
    [
        ([], "phases"),
        ([{"name": "Evaluation"}, {"name": "Funded"}], "phases[0].profit_target_bps"),
        ([{"name": "E", "profit_target_bps": 800, "max_loss_mode": "weekly"}, {"name": "F"}],
         "phases[0].max_loss_mode"),
        ([{"name": "E", "profit_target_bps": 800, "daily_loss_bps": 0}, {"name": "F"}],
         "phases[0].daily_loss_bps"),
        ([{"name": "E", "profit_target_bps": 800}, {"name": "F", "profit_target_bps": 100}],
         "phases[1].profit_target_bps"),
        ([{"name": ""}], "phases[0].name"),
        ([{"name": "E", "profit_target_bps": "8%"}, {"name": "F"}], "phases[0].profit_target_bps"),
    ],
)  # fmt: skip
def test_bad_phases_are_refused_naming_the_field(phases, field):  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError) as error:
        parse_phases(phases)
    assert error.value.field == field
