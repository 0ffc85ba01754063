"""The port's types and the conversions at the adapter edge."""

from __future__ import annotations

import uuid

import pytest

from brokerdesk.core.errors import ValidationError
from brokerdesk.trading.platform.mt5_fields import deal_from_mt5
from brokerdesk.trading.platform.port import (
    COMMENT_MAX,
    BalanceOp,
    Deal,
    DealAction,
    DealEntry,
    check_comment,
    from_minor,
    to_minor,
    transfer_comment,
    transfer_id_from_comment,
)


def test_transfer_id_fits_the_platform_comment_and_reads_back() -> None:
    transfer_id = uuid.uuid4()
    comment = transfer_comment(transfer_id)
    assert len(comment) <= COMMENT_MAX
    assert transfer_id_from_comment(comment) == transfer_id
    assert transfer_id_from_comment("initial deposit") is None
    with pytest.raises(ValidationError):
        check_comment(str(uuid.uuid4()))  # 36 characters: MT5 would cut it


@pytest.mark.parametrize(
    ("value", "digits", "minor"),
    [
        (0.1 + 0.2, 2, 30),
        (600.0, 2, 60_000),
        (-49.99, 2, -4_999),
        (1.08512, 5, 108_512),
        (123456789.01, 2, 12_345_678_901),
        (1.5, 0, 2),
        (2.5, 0, 2),
    ],
)
def test_platform_floats_become_exact_minor_units(value: float, digits: int, minor: int) -> None:
    assert to_minor(value, digits) == minor


def test_minor_units_go_back_to_the_platform_float() -> None:
    assert from_minor(60_000, 2) == 600.0
    assert from_minor(-4_999, 2) == -49.99
    assert from_minor(5, 0) == 5.0


def test_balance_ops_map_to_mt5_actions_and_signs() -> None:
    assert [(op.action, op.sign) for op in BalanceOp] == [
        (DealAction.DEAL_BALANCE, 1),
        (DealAction.DEAL_BALANCE, -1),
        (DealAction.DEAL_CREDIT, 1),
        (DealAction.DEAL_CREDIT, -1),
    ]


def test_mt5_enum_values() -> None:
    assert (
        DealAction.DEAL_BUY,
        DealAction.DEAL_SELL,
        DealAction.DEAL_BALANCE,
        DealAction.DEAL_CREDIT,
    ) == (0, 1, 2, 3)
    assert (
        DealEntry.ENTRY_IN,
        DealEntry.ENTRY_OUT,
        DealEntry.ENTRY_INOUT,
        DealEntry.ENTRY_OUT_BY,
    ) == (0, 1, 2, 3)


def test_an_mt5_deal_converts_to_integers_and_round_trips_as_json() -> None:
    deal = deal_from_mt5(
        {
            "Deal": 9001,
            "Login": 500001,
            "Order": 90010,
            "PositionID": 90000,
            "Action": 1,
            "Entry": 1,
            "Reason": 0,
            "Symbol": "EURUSD",
            "Volume": 10500,
            "VolumeExt": 105000000,
            "VolumeClosed": 10500,
            "VolumeClosedExt": 105000000,
            "Price": 1.08512,
            "Digits": 5,
            "DigitsCurrency": 2,
            "ContractSize": 100000.0,
            "Profit": -49.99,
            "Commission": -3.68,
            "Storage": -0.65,
            "Fee": 0.0,
            "Time": 1767225600,
            "TimeMsc": 1767225600123,
            "Comment": "",
            "ExternalID": "",
        }
    )
    assert (deal.profit, deal.commission, deal.storage, deal.price) == (-4_999, -368, -65, 108_512)
    assert (deal.volume, deal.volume_ext, deal.action, deal.entry) == (10_500, 105_000_000, 1, 1)
    assert deal.is_trade and deal.time.year == 2026
    data = deal.to_dict()
    assert all(isinstance(v, int | str) for v in data.values())
    assert Deal.from_dict(data) == deal


def test_wire_dicts_convert_exactly_like_mt5_objects() -> None:
    # The simulator's pushed dicts take a fast path; MT5 objects (attributes) the general one.
    import random
    from types import SimpleNamespace

    from brokerdesk.trading.platform.mt5_fields import position_from_mt5

    rng = random.Random(4)

    def money() -> float | int:
        return rng.choice(
            [
                0.0,
                -0.0,
                round(rng.uniform(-1e4, 1e4), 2),
                rng.randrange(-999, 999) + 0.005,  # a half cent: rounded half-even
                rng.randrange(-99, 99) / 8,
                rng.uniform(-1e13, 1e13),  # beyond the float fast path when scaled
                rng.randrange(-50, 50),  # an int, as some platforms send
            ]
        )

    for _ in range(3000):
        cd, digits = rng.choice([0, 2, 3]), rng.choice([0, 2, 3, 5])
        deal_wire = {
            "Deal": rng.randrange(1, 10**9), "Login": rng.randrange(1, 10**6),
            "Action": rng.choice([0, 1, 2, 3]), "Entry": rng.choice([0, 1, 2, 3]),
            "TimeMsc": rng.randrange(0, 2 * 10**12), "DigitsCurrency": cd, "Digits": digits,
            "Profit": money(), "Commission": money(), "Storage": money(), "Fee": money(),
            "Price": abs(money()), "Volume": rng.randrange(0, 10**6), "Symbol": "EURUSD",
            "ContractSize": 100000.0, "Comment": rng.choice(["", "x"]), "Reason": 3,
            # every field distinct, so the fast path's positional order is checked too
            "Order": rng.randrange(1, 10**9), "PositionID": rng.randrange(1, 10**9),
            "VolumeExt": rng.randrange(1, 10**9), "VolumeClosed": rng.randrange(1, 10**6),
            "VolumeClosedExt": rng.randrange(1, 10**9), "ExternalID": rng.choice(["", "e"]),
        }  # fmt: skip
        assert deal_from_mt5(deal_wire) == deal_from_mt5(SimpleNamespace(**deal_wire))
        position_wire = {
            "Position": rng.randrange(1, 10**9), "Login": 7, "Symbol": "XAUUSD",
            "Action": rng.choice([0, 1]), "Volume": 100, "Digits": digits,
            "PriceOpen": abs(money()), "PriceCurrent": abs(money()), "ContractSize": 100.0,
            "Profit": money(), "Storage": money(), "TimeUpdateMsc": 5,
            "VolumeExt": rng.randrange(1, 10**9), "TimeCreateMsc": rng.randrange(1, 10**12),
            "Comment": rng.choice(["", "c"]),
        }  # fmt: skip
        assert position_from_mt5(position_wire, cd) == position_from_mt5(
            SimpleNamespace(**position_wire), cd
        )
