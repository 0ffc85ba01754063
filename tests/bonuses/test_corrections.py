"""Dealer corrections (``trading.deal_corrected``) of deals the bonuses already counted."""

from __future__ import annotations

from typing import Any

import pytest

from brokerdesk.bonuses import queries, services
from brokerdesk.bonuses.models import Bonus, BonusEvent, BonusStatus, DealBonusCost
from brokerdesk.core.bus.base import Message
from brokerdesk.core.ids import new_id
from brokerdesk.core.models import OutboxEvent
from tests.bonuses.conftest import FINANCE, bucket, campaign, client, consume, deal_message

pytestmark = pytest.mark.django_db

STATE_KEYS = (
    "login",
    "action",
    "entry",
    "reason",
    "position_id",
    "symbol",
    "volume",
    "volume_ext",
    "volume_closed",
    "volume_closed_ext",
    "profit",
    "commission",
    "storage",
    "fee",
    "currency_digits",
    "time_msc",
)


def granted(client_id, amount=10_000, **terms):  # type: ignore[no-untyped-def]
    """A manual grant under a fresh campaign (default $5 per lot unlocks)."""
    owns_login(client_id)
    c = campaign(trigger="manual", fixed_amount=amount, **terms)
    outcome = services.grant_manual(
        campaign_id=c.id,
        client_id=client_id,
        amount=amount,
        reason="goodwill",
        by=FINANCE,
        request_key=f"req-{c.id}",
    )
    return Bonus.objects.get(pk=outcome.bonus_id)


def owns_login(client_id, login=7001):  # type: ignore[no-untyped-def]
    """``trading.account_opened`` for the client's login (how a correction finds its owner)."""
    services.record_account(
        server="sim", login=login, client_id=client_id, currency="USD", group="real", is_live=True
    )


def correction(
    closed: Message,
    version_msc: int,
    *,
    before: dict[str, Any] | None = None,
    lots: float | None = None,
    profit: int | None = None,
    delete: bool = False,
) -> Message:
    """A ``trading.deal_corrected`` message for the deal of ``closed``, in trading's shape."""
    p = closed.payload
    old = before or {k: p[k] for k in STATE_KEYS}
    after = None
    if not delete:
        after = dict(old)
        if lots is not None:
            after["volume"] = after["volume_closed"] = int(lots * 10_000)
        if profit is not None:
            after["profit"] = profit
    delta = {
        k: int((after or {}).get(k, 0)) - int(old.get(k, 0))
        for k in ("profit", "commission", "storage", "fee", "volume", "volume_closed")
    }
    payload = {
        "server": p["server"],
        "login": p["login"],
        "deal": p["deal"],
        "change": "delete" if delete else "update",
        "version_msc": version_msc,
        "before": old,
        "after": after,
        "delta": delta,
    }
    return Message(str(new_id()), "trading", "trading.deal_corrected", payload, closed.occurred_at)


def after_of(m: Message) -> dict[str, Any]:
    """The ``after`` state of a correction (the next correction's ``before``)."""
    after = m.payload["after"]
    assert after is not None
    return dict(after)


def test_an_update_that_raises_the_volume_unlocks_the_difference_once():
    alice = client()
    bonus = granted(alice, 10_000, unlock_per_lot=500)
    closed = deal_message(alice, lots=2)
    consume("bonuses.trading", [closed])
    assert bucket(alice, "cash") == 1_000

    fix = correction(closed, 1_000, lots=5)
    consume("bonuses.trading", [fix])
    consume("bonuses.trading", [fix])  # redelivered

    bonus.refresh_from_db()
    assert bonus.volume_done == 50_000 and bonus.unlocked == 2_500
    assert bucket(alice, "cash") == 2_500 and bucket(alice, "bonus") == 7_500
    key = f"{closed.payload['server']}:{closed.payload['deal']}"
    assert DealBonusCost.objects.get(deal_key=key).amount == 2_500
    assert BonusEvent.objects.filter(key__startswith="correction:").count() == 1
    assert OutboxEvent.objects.filter(type="bonus.unlocked").count() == 2


def test_an_update_that_lowers_the_volume_takes_nothing_back_but_is_noted_for_staff():
    alice = client()
    bonus = granted(alice, 10_000, unlock_per_lot=500)
    closed = deal_message(alice, lots=4)
    consume("bonuses.trading", [closed])
    assert bucket(alice, "cash") == 2_000

    consume("bonuses.trading", [correction(closed, 1_000, lots=1)])

    bonus.refresh_from_db()
    assert bonus.volume_done == 10_000 and bonus.unlocked == 2_000  # nothing clawed back
    assert bucket(alice, "cash") == 2_000 and bucket(alice, "bonus") == 8_000
    note = BonusEvent.objects.get(kind="corrected")
    assert note.amount == 0 and note.figures["over_released"] == 1_500
    assert note.figures["review"] is True and note.figures["volume_after"] == 10_000
    # staff see the note, the client does not
    assert any(i.kind == "corrected" for i in queries.history_of(alice, staff=True))
    assert not any(i.kind == "corrected" for i in queries.history_of(alice))
    # the next lots must first earn back what was released on the corrected-away volume
    consume("bonuses.trading", [deal_message(alice, lots=2)])
    assert bucket(alice, "cash") == 2_000
    consume("bonuses.trading", [deal_message(alice, lots=2)])
    assert bucket(alice, "cash") == 2_500


def test_a_delete_removes_the_deals_volume_and_never_goes_below_zero():
    alice = client()
    bonus = granted(alice, 50_000, unlock_per_lot=0, lots_required=50_000)
    closed = deal_message(alice, lots=2)
    consume("bonuses.trading", [closed])
    Bonus.objects.filter(pk=bonus.pk).update(volume_done=5_000)  # inconsistent on purpose

    consume("bonuses.trading", [correction(closed, 1_000, delete=True)])

    bonus.refresh_from_db()
    assert bonus.volume_done == 0 and bonus.status == BonusStatus.ACTIVE
    assert bucket(alice, "cash") == 0
    # a later update of the deleted deal (trading never sends one) and the deal_closed again
    consume("bonuses.trading", [correction(closed, 2_000, lots=9)])
    consume("bonuses.trading", [closed])
    bonus.refresh_from_db()
    assert bonus.volume_done == 0


def test_a_delete_after_a_completed_target_flags_the_bonus_and_keeps_the_money():
    alice = client()
    bonus = granted(alice, 5_000, unlock_per_lot=0, lots_required=30_000)
    first, second = deal_message(alice, lots=2), deal_message(alice, lots=1)
    consume("bonuses.trading", [first, second])
    bonus.refresh_from_db()
    assert bonus.status == BonusStatus.COMPLETED and bucket(alice, "cash") == 5_000

    consume("bonuses.trading", [correction(second, 1_000, delete=True)])

    bonus.refresh_from_db()
    assert bonus.status == BonusStatus.COMPLETED and bonus.volume_done == 20_000
    assert bucket(alice, "cash") == 5_000
    note = BonusEvent.objects.get(kind="corrected")
    assert note.figures["review"] is True and note.figures["over_released"] == 5_000


def test_cashback_follows_the_corrected_loss_up_but_not_down():
    alice = client()
    owns_login(alice)
    c = campaign(
        trigger="manual", kind="cashback", cashback_bps=1_000, max_per_grant=50_000, percent_bps=0
    )
    services.grant_manual(
        campaign_id=c.id, client_id=alice, amount=50_000, reason="p", by=FINANCE, request_key="r"
    )
    closed = deal_message(alice, profit=-10_000)
    consume("bonuses.trading", [closed])
    assert bucket(alice, "cash") == 1_000

    worse = correction(closed, 1_000, profit=-15_000)
    consume("bonuses.trading", [worse])
    assert bucket(alice, "cash") == 1_500
    consume("bonuses.trading", [correction(closed, 2_000, before=after_of(worse), profit=-5_000)])
    assert bucket(alice, "cash") == 1_500
    assert BonusEvent.objects.get(kind="corrected").figures["over_released"] == 1_000


def test_an_older_correction_delivered_late_changes_nothing():
    alice = client()
    bonus = granted(alice, 10_000, rebate_per_lot=0, unlock_per_lot=500)
    closed = deal_message(alice, lots=2)
    consume("bonuses.trading", [closed])
    v1 = correction(closed, 1_000, lots=3)
    v2 = correction(closed, 2_000, before=after_of(v1), lots=6)
    consume("bonuses.trading", [v1, v2])
    bonus.refresh_from_db()
    assert bonus.volume_done == 60_000 and bucket(alice, "cash") == 3_000

    consume("bonuses.trading", [v1])  # redelivered after the newer one
    consume("bonuses.trading", [correction(closed, 500, lots=1)])  # older, never applied

    bonus.refresh_from_db()
    assert bonus.volume_done == 60_000 and bucket(alice, "cash") == 3_000
    assert BonusEvent.objects.filter(key__startswith="correction:").count() == 2


def test_newer_version_first_then_older_is_ignored():
    alice = client()
    bonus = granted(alice, 10_000, unlock_per_lot=500)
    closed = deal_message(alice, lots=2)
    consume("bonuses.trading", [closed])
    v1 = correction(closed, 1_000, lots=3)
    v2 = correction(closed, 2_000, before=after_of(v1), lots=1)
    consume("bonuses.trading", [v2])  # the bus reordered them
    consume("bonuses.trading", [v1])
    bonus.refresh_from_db()
    assert bonus.volume_done == 10_000  # counted against what bonuses counted, not v2.before


def test_a_correction_of_a_deal_bonuses_never_counted_changes_nothing():
    alice = client()
    bonus = granted(alice, 10_000, unlock_per_lot=500)
    unseen = deal_message(alice, lots=2)  # never delivered
    consume("bonuses.trading", [correction(unseen, 1_000, lots=8)])
    consume("bonuses.trading", [correction(unseen, 2_000, delete=True)])
    stranger = deal_message(alice, lots=1, login=99_999)
    stranger.payload.pop("client_id")
    consume("bonuses.trading", [correction(stranger, 1_000, lots=3)])

    bonus.refresh_from_db()
    assert bonus.volume_done == 0 and bucket(alice, "cash") == 0
    assert not BonusEvent.objects.filter(key__startswith="correction:").exists()


def test_a_deal_closed_that_arrives_after_its_correction_counts_the_corrected_figures():
    alice = client()
    bonus = granted(alice, 10_000, unlock_per_lot=500)
    closed = deal_message(alice, lots=2)
    consume("bonuses.trading", [correction(closed, 1_000, lots=4)])
    consume("bonuses.trading", [closed])
    bonus.refresh_from_db()
    assert bonus.volume_done == 40_000 and bucket(alice, "cash") == 2_000


def test_a_non_trade_deal_correction_is_ignored():
    alice = client()
    bonus = granted(alice, 10_000, unlock_per_lot=500)
    closed = deal_message(alice, lots=2)
    consume("bonuses.trading", [closed])
    balance_op = correction(closed, 1_000, lots=7)
    for state in (balance_op.payload["before"], balance_op.payload["after"]):
        state["action"] = 2  # a balance deal
    consume("bonuses.trading", [balance_op])
    bonus.refresh_from_db()
    assert bonus.volume_done == 20_000
