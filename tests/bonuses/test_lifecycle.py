"""Grants, unlocks and forfeiture through the services and the registered consumers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from brokerdesk.bonuses import queries, services
from brokerdesk.bonuses.models import Bonus, BonusEvent, BonusStatus
from brokerdesk.core import clock
from brokerdesk.core.errors import Conflict, PermissionDenied, ValidationError
from brokerdesk.core.models import AuditEntry, OutboxEvent
from tests.bonuses.conftest import (
    FINANCE,
    bucket,
    campaign,
    client,
    consume,
    deal_message,
    expense,
    fund,
)
from tests.clients.factories import user

pytestmark = pytest.mark.django_db


def granted(client_id, amount=100_000, **terms):  # type: ignore[no-untyped-def]
    """A manual grant of ``amount`` under a fresh campaign; returns the bonus row."""
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


def test_a_manual_grant_credits_the_bonus_bucket_from_the_bonus_expense_and_is_audited():
    alice = client()
    bonus = granted(alice, 20_000)

    assert bucket(alice, "bonus") == 20_000 and bucket(alice, "cash") == 0
    assert expense() == -20_000
    assert OutboxEvent.objects.filter(type="bonus.granted").count() == 1
    event = OutboxEvent.objects.get(type="bonus.granted").payload
    assert event["bonus_id"] == str(bonus.id) and event["amount"] == 20_000
    assert event["client_id"] == str(alice) and event["reason"] == "goodwill"
    assert AuditEntry.objects.filter(action="bonuses.granted", object_id=str(bonus.id)).exists()


def test_a_manual_grant_with_the_same_request_key_grants_once():
    alice = client()
    c = campaign(trigger="manual", fixed_amount=5_000)
    kwargs = {"campaign_id": c.id, "client_id": alice, "reason": "x", "by": FINANCE}
    first = services.grant_manual(amount=5_000, request_key="k1", **kwargs)
    again = services.grant_manual(amount=5_000, request_key="k1", **kwargs)

    assert again.replayed and again.bonus_id == first.bonus_id
    assert bucket(alice, "bonus") == 5_000
    with pytest.raises(Conflict):
        services.grant_manual(amount=6_000, request_key="k1", **kwargs)


def test_a_manual_grant_needs_a_reason_and_the_finance_role():
    alice = client()
    c = campaign(trigger="manual", fixed_amount=5_000)
    with pytest.raises(ValidationError) as err:
        services.grant_manual(
            campaign_id=c.id,
            client_id=alice,
            amount=5_000,
            reason=" ",
            by=FINANCE,
            request_key="r",
        )
    assert err.value.field == "reason"
    with pytest.raises(PermissionDenied):
        services.grant_manual(
            campaign_id=c.id,
            client_id=alice,
            amount=5_000,
            reason="x",
            by=user("support"),
            request_key="r2",
        )
    assert Bonus.objects.count() == 0


def test_a_staff_grant_is_refused_where_bonuses_are_not_allowed():
    cy = client(jurisdiction="cysec", country="CY")
    c = campaign(trigger="manual", fixed_amount=5_000)
    with pytest.raises(ValidationError) as err:
        services.grant_manual(
            campaign_id=c.id, client_id=cy, amount=5_000, reason="x", by=FINANCE, request_key="r"
        )
    assert err.value.code == "policy"


def test_lots_traded_unlock_the_bonus_partially_into_cash():
    alice = client()
    bonus = granted(alice, 2_000, unlock_per_lot=500)  # $20, $5 per lot

    consume("bonuses.trading", [deal_message(alice, lots=1.5)])
    assert bucket(alice, "cash") == 750 and bucket(alice, "bonus") == 1_250
    consume("bonuses.trading", [deal_message(alice, lots=10)])

    bonus.refresh_from_db()
    assert bonus.status == BonusStatus.COMPLETED and bonus.unlocked == 2_000
    assert bucket(alice, "cash") == 2_000 and bucket(alice, "bonus") == 0
    assert OutboxEvent.objects.filter(type="bonus.unlocked").count() == 2


def test_a_redelivered_deal_unlocks_nothing_more():
    alice = client()
    granted(alice, 10_000, unlock_per_lot=500)
    message = deal_message(alice, lots=2)

    consume("bonuses.trading", [message])
    consume("bonuses.trading", [message])

    assert bucket(alice, "cash") == 1_000
    assert BonusEvent.objects.filter(kind="unlocked").count() == 1


def test_partial_lots_are_not_lost_to_rounding():
    alice = client()
    granted(alice, 10_000, unlock_per_lot=333)
    for _ in range(3):
        consume("bonuses.trading", [deal_message(alice, lots=0.01)])
    # 0.03 lots at 333 = 9.99 → 9 minor units in all (never 0+0+0)
    assert bucket(alice, "cash") == 9


def test_a_volume_target_unlocks_everything_once_reached():
    alice = client()
    bonus = granted(alice, 5_000, unlock_per_lot=0, lots_required=30_000)
    consume("bonuses.trading", [deal_message(alice, lots=2)])
    assert bucket(alice, "cash") == 0
    consume("bonuses.trading", [deal_message(alice, lots=1)])
    bonus.refresh_from_db()
    assert bonus.status == BonusStatus.COMPLETED and bucket(alice, "cash") == 5_000


def test_deals_after_the_unlock_window_do_not_count():
    alice = client()
    granted(alice, 5_000, window_days=7)
    late = clock.now() + timedelta(days=8)
    consume("bonuses.trading", [deal_message(alice, lots=3, at=late)])
    assert bucket(alice, "cash") == 0


def test_a_rebate_pays_per_lot_into_cash_up_to_its_cap():
    alice = client()
    c = campaign(
        trigger="manual", kind="rebate", rebate_per_lot=300, max_per_grant=1_000, percent_bps=0
    )
    services.grant_manual(
        campaign_id=c.id, client_id=alice, amount=1_000, reason="VIP", by=FINANCE, request_key="r"
    )
    assert bucket(alice, "bonus") == 0
    consume("bonuses.trading", [deal_message(alice, lots=2), deal_message(alice, lots=5)])
    assert bucket(alice, "cash") == 1_000 and expense() == -1_000


def test_cashback_pays_a_share_of_a_losing_trade():
    alice = client()
    c = campaign(
        trigger="manual", kind="cashback", cashback_bps=1_000, max_per_grant=50_000, percent_bps=0
    )
    services.grant_manual(
        campaign_id=c.id,
        client_id=alice,
        amount=50_000,
        reason="promo",
        by=FINANCE,
        request_key="r",
    )
    consume("bonuses.trading", [deal_message(alice, profit=-12_000)])
    consume("bonuses.trading", [deal_message(alice, profit=8_000)])
    assert bucket(alice, "cash") == 1_200


def test_a_withdrawal_before_unlock_forfeits_the_locked_bonus_as_previewed():
    alice = client()
    fund(alice, 50_000)
    bonus = granted(alice, 10_000)
    preview = queries.forfeiture_preview(alice, "USD", 20_000)
    assert preview.forfeited == 10_000 and preview.bonuses[0][0] == bonus.id

    services.forfeit_for_withdrawal(
        client_id=alice, currency="USD", amount=20_000, withdrawal_id="w1"
    )
    bonus.refresh_from_db()
    assert bonus.status == BonusStatus.FORFEITED and bonus.forfeited == preview.forfeited
    assert bucket(alice, "bonus") == 0 and expense() == 0
    history = queries.history_of(alice)
    assert history[0].reason_code == "withdrawal" and history[0].figures["withdrawal"] == 20_000


def test_a_proportional_campaign_forfeits_the_withdrawn_share():
    alice = client()
    fund(alice, 40_000)
    bonus = granted(alice, 10_000, withdrawal_forfeit="proportional")
    preview = queries.forfeiture_preview(alice, "USD", 10_000)
    assert preview.forfeited == 2_500  # a quarter of the cash → a quarter of the bonus
    ledger_cash_moved_to_locked = 10_000  # what payments does before emitting the event
    from brokerdesk.ledger import services as ledger

    ledger.transfer(
        "lock-w2",
        debit_account=ledger.wallet_account(alice, "USD").id,
        credit_account=ledger.wallet_account(alice, "USD", "locked").id,
        amount=ledger_cash_moved_to_locked,
        currency="USD",
        kind="withdrawal_lock",
    )
    services.forfeit_for_withdrawal(
        client_id=alice, currency="USD", amount=10_000, withdrawal_id="w2"
    )
    bonus.refresh_from_db()
    assert bonus.forfeited == 2_500 and bonus.status == BonusStatus.ACTIVE


def test_expired_bonuses_are_forfeited_by_the_periodic_job():
    alice = client()
    bonus = granted(alice, 10_000, expiry_days=30)
    consume("bonuses.trading", [deal_message(alice, lots=1)])
    assert services.expire_due(now=clock.now() + timedelta(days=29)) == 0
    assert services.expire_due(now=clock.now() + timedelta(days=31)) == 1
    bonus.refresh_from_db()
    assert bonus.status == BonusStatus.EXPIRED and bonus.forfeited == 9_500
    assert bucket(alice, "bonus") == 0 and bucket(alice, "cash") == 500
    assert services.expire_due(now=clock.now() + timedelta(days=31)) == 0


def test_closing_the_account_forfeits_every_active_bonus():
    from brokerdesk.clients import services as clients

    alice = client()
    granted(alice, 3_000)
    granted(alice, 4_000)
    clients.end_relationship(alice, by="system:test", reason="client asked")
    from tests.bonuses.conftest import outbox

    consume("bonuses.clients", outbox("client.updated"))
    assert bucket(alice, "bonus") == 0
    assert set(Bonus.objects.values_list("status", flat=True)) == {BonusStatus.FORFEITED}


def test_staff_can_forfeit_with_a_reason_once_per_request():
    alice = client()
    bonus = granted(alice, 3_000)
    removed = services.forfeit_manual(bonus.id, reason="abuse", by=FINANCE, request_key="f1")
    again = services.forfeit_manual(bonus.id, reason="abuse", by=FINANCE, request_key="f1")
    assert (removed, again) == (3_000, 0) and bucket(alice, "bonus") == 0


def test_bonus_money_is_never_withdrawable():
    from brokerdesk.ledger import services as ledger
    from brokerdesk.ledger.errors import InsufficientFunds

    alice = client()
    granted(alice, 10_000)
    with pytest.raises(InsufficientFunds):
        ledger.transfer(
            "wd-bonus",
            debit_account=ledger.wallet_account(alice, "USD").id,
            credit_account=ledger.wallet_account(alice, "USD", "locked").id,
            amount=1,
            currency="USD",
            kind="withdrawal_lock",
        )
    assert bucket(alice, "bonus") == 10_000


def test_the_client_timeline_says_why_the_bonus_was_removed():
    from brokerdesk.clients.queries import timeline
    from tests.bonuses.conftest import outbox

    alice = client()
    bonus = granted(alice, 3_000)
    services.forfeit_manual(
        bonus.id, reason="Bonus abuse: hedged accounts", by=FINANCE, request_key="t1"
    )
    consume("clients.timeline", outbox("bonus.granted", "bonus.forfeited"))

    entries = {e.kind: e for e in timeline(alice)}
    removed = entries["bonus.forfeited"]
    assert removed.data["reason"] == "Bonus abuse: hedged accounts"
    assert removed.data["amount"] == 3_000 and removed.data["figures"]["rule"] == "staff"
    assert "bonus.granted" in entries


def test_a_campaign_is_revised_into_a_new_version_and_old_grants_keep_their_terms():
    alice = client()
    bonus = granted(alice, 2_000, unlock_per_lot=500)
    old = bonus.campaign
    new = services.revise_campaign(old.id, by=FINANCE, reason="cheaper", unlock_per_lot=200)

    old.refresh_from_db()
    assert (new.version, new.code, new.unlock_per_lot) == (2, old.code, 200)
    assert old.status == "ended" and old.unlock_per_lot == 500
    with pytest.raises(Conflict):
        services.revise_campaign(old.id, by=FINANCE, reason="again", unlock_per_lot=100)
    consume("bonuses.trading", [deal_message(alice, lots=1)])
    assert bucket(alice, "cash") == 500  # the grant still unlocks on its own version's terms


def test_closing_a_rebate_moves_no_money_and_says_what_was_left_unpaid():
    alice = client()
    c = campaign(
        trigger="manual",
        kind="rebate",
        rebate_per_lot=300,
        max_per_grant=1_000,
        percent_bps=0,
        expiry_days=10,
    )
    services.grant_manual(
        campaign_id=c.id, client_id=alice, amount=1_000, reason="VIP", by=FINANCE, request_key="r"
    )
    consume("bonuses.trading", [deal_message(alice, lots=1)])

    assert services.expire_due(now=clock.now() + timedelta(days=11)) == 1
    assert bucket(alice, "cash") == 300 and expense() == -300
    closing = queries.history_of(alice)[0]
    assert closing.kind == "expired" and closing.amount == 0
    assert closing.figures["unpaid_cap"] == 700


def test_a_campaign_never_grants_beyond_its_budget():
    c = campaign(percent_bps=10_000, budget=15_000, deposit_methods=[])
    first, second = client(), client()
    one = services.grant_for_deposit(
        client_id=first, payment_id="p1", amount=10_000, currency="USD", method="sandbox"
    )
    two = services.grant_for_deposit(
        client_id=second, payment_id="p2", amount=10_000, currency="USD", method="sandbox"
    )
    three = services.grant_for_deposit(
        client_id=second, payment_id="p3", amount=10_000, currency="USD", method="sandbox"
    )
    c.refresh_from_db()
    assert [one[0].amount, two[0].amount, three[0].amount] == [10_000, 5_000, 0]
    assert three[0].refusal is not None and three[0].refusal.rule == "budget"
    assert c.granted_total == 15_000
