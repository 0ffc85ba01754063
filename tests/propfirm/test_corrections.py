"""Dealer corrections (``trading.deal_corrected``) of challenge logins' deals: re-evaluation,
staff review of decisions the corrected figures contradict, idempotency."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from brokerdesk.core import clock
from brokerdesk.core.bus.base import Message
from brokerdesk.core.consumers import autodiscover
from brokerdesk.core.errors import IllegalTransition, ValidationError
from brokerdesk.core.ids import new_id
from brokerdesk.core.models import AuditEntry
from brokerdesk.propfirm import queries, services
from brokerdesk.propfirm.models import (
    ChallengeStatus,
    PhaseAccount,
    PhaseDay,
    PhaseDeal,
    PhaseDealCorrection,
    PhaseStatus,
)
from tests.propfirm.conftest import EVALUATION, FUNDED, T0, deal, msc, started_account

pytestmark = pytest.mark.django_db

HOUR_MS = 3_600_000


def corrected(
    closed: dict[str, Any],
    version_msc: int,
    *,
    before: dict[str, Any] | None = None,
    profit: int | None = None,
    delete: bool = False,
) -> dict[str, Any]:
    """A ``trading.deal_corrected`` payload for the deal ``closed`` (trading's shape)."""
    old = before or {k: v for k, v in closed.items() if k not in ("server", "deal")}
    after = None if delete else {**old, **({"profit": profit} if profit is not None else {})}
    return {
        "server": closed["server"],
        "login": closed["login"],
        "deal": closed["deal"],
        "change": "delete" if delete else "update",
        "version_msc": version_msc,
        "before": old,
        "after": after,
        "delta": {"profit": int((after or {}).get("profit", 0)) - int(old["profit"])},
    }


def consume(*payloads: dict[str, Any], kind: str = "trading.deal_corrected") -> None:
    """Hand the payloads to the registered ``propfirm.evaluate_deals`` consumer."""
    messages = [
        Message(str(new_id()), "trading", kind, p, clock.now().isoformat()) for p in payloads
    ]
    autodiscover()["propfirm.evaluate_deals"].handler(messages)


def day_row(account: PhaseAccount) -> PhaseDay:
    return PhaseDay.objects.get(account=account, day=T0.date())


def test_a_breach_caused_by_a_later_corrected_deal_is_flagged_for_staff_not_undone(platform):
    with clock.frozen(T0):
        _, account = started_account(platform)
        assert account.login is not None
        loss = deal(account, -600_00, msc(T0) + HOUR_MS)
        consume(loss, kind="trading.deal_closed")
        services.record_equity(account.server, account.login, equity=9_400_00,
                               balance=9_400_00, at_msc=msc(T0) + HOUR_MS + 60_000)  # fmt: skip
        assert PhaseAccount.objects.get(pk=account.pk).rule == "daily_loss"

        consume(corrected(loss, msc(T0) + 2 * HOUR_MS, profit=-300_00))

    account = PhaseAccount.objects.get(pk=account.pk)
    assert account.status == PhaseStatus.FAILED and account.rule == "daily_loss"
    assert account.challenge.status == ChallengeStatus.FAILED
    entry = PhaseDealCorrection.objects.get()
    assert entry.outcome == "breach_not_confirmed" and entry.review
    assert (entry.pnl_before, entry.pnl_after) == (-600_00, -300_00)
    assert entry.verdict["outcome"] == "none" and entry.verdict["decided_rule"] == "daily_loss"
    day = day_row(account)
    assert day.pnl == -300_00 and day.min_equity == 9_700_00  # the reading moved with it

    [queued] = queries.corrections(to_review=True)
    assert queued.id == entry.pk and queued.outcome == "breach_not_confirmed"
    with pytest.raises(ValidationError):
        services.resolve_correction_review(entry.pk, note=" ", by="system:dealing")
    services.resolve_correction_review(entry.pk, note="Reinstated by hand", by="system:dealing")
    entry.refresh_from_db()
    assert entry.reviewed_by == "system:dealing" and entry.reviewed_at is not None
    with pytest.raises(IllegalTransition):
        services.resolve_correction_review(entry.pk, note="again", by="system:dealing")
    assert AuditEntry.objects.filter(action="propfirm.correction_reviewed").count() == 1
    assert queries.corrections(to_review=True) == [] and len(queries.corrections()) == 1


def test_a_correction_that_deepens_a_loss_fails_the_active_phase_and_flags_it(platform):
    with clock.frozen(T0):
        _, account = started_account(platform)
        assert account.login is not None
        loss = deal(account, -400_00, msc(T0) + HOUR_MS)
        consume(loss, kind="trading.deal_closed")
        services.record_equity(account.server, account.login, equity=9_600_00,
                               balance=9_600_00, at_msc=msc(T0) + HOUR_MS + 60_000)  # fmt: skip
        assert PhaseAccount.objects.get(pk=account.pk).status == PhaseStatus.ACTIVE

        consume(corrected(loss, msc(T0) + 2 * HOUR_MS, profit=-700_00))

    account = PhaseAccount.objects.get(pk=account.pk)
    assert account.status == PhaseStatus.FAILED and account.rule == "daily_loss"
    assert account.figures["loss"] == 700_00
    entry = PhaseDealCorrection.objects.get()
    assert entry.outcome == "failed_on_correction" and entry.review


def test_a_raised_profit_passes_the_phase_and_a_lowered_one_flags_the_pass(platform):
    with clock.frozen(T0):
        _, account = started_account(platform, EVALUATION, FUNDED)
        win = deal(account, 700_00, msc(T0) + HOUR_MS)
        consume(win, kind="trading.deal_closed")
        assert PhaseAccount.objects.get(pk=account.pk).status == PhaseStatus.ACTIVE

        raised = corrected(win, msc(T0) + 2 * HOUR_MS, profit=900_00)
        consume(raised)
        passed = PhaseAccount.objects.get(pk=account.pk)
        assert passed.status == PhaseStatus.PASSED and passed.rule == "profit_target"
        first = PhaseDealCorrection.objects.get()
        assert first.outcome == "passed_on_correction" and not first.review

        consume(corrected(win, msc(T0) + 3 * HOUR_MS, before=raised["after"], profit=500_00))

    account = PhaseAccount.objects.get(pk=account.pk)
    assert account.status == PhaseStatus.PASSED  # not revoked
    second = PhaseDealCorrection.objects.exclude(pk=first.pk).get()
    assert second.outcome == "pass_not_confirmed" and second.review
    assert day_row(account).pnl == 500_00


def test_best_day_consistency_and_trading_days_follow_a_correction(platform):
    phase = {**EVALUATION, "consistency_bps": 5_000, "min_trading_days": 2}
    with clock.frozen(T0 + timedelta(days=2)):
        _, account = started_account(platform, phase, FUNDED)
        day1, day2 = msc(T0) + HOUR_MS, msc(T0) + 86_400_000 + HOUR_MS
        small, big = deal(account, 300_00, day1), deal(account, 600_00, day2)
        consume(small, big, kind="trading.deal_closed")
        assert PhaseAccount.objects.get(pk=account.pk).status == PhaseStatus.ACTIVE  # 66 % day

        consume(corrected(small, day2 + HOUR_MS, profit=600_00))  # 600 of 1,200: 50 %

        assert PhaseAccount.objects.get(pk=account.pk).status == PhaseStatus.PASSED

    with clock.frozen(T0 + timedelta(days=2)):
        _, other = started_account(platform, phase, FUNDED)
        a, b = deal(other, 500_00, day1), deal(other, 500_00, day2)
        c = deal(other, 1, day2 + 1)
        consume(a, kind="trading.deal_closed")
        consume(corrected(b, day2 + HOUR_MS, delete=True))  # never seen: a tombstone
        consume(b, c, kind="trading.deal_closed")  # late deal_closed of the deleted deal
    other = PhaseAccount.objects.get(pk=other.pk)
    assert other.status == PhaseStatus.ACTIVE  # one trading day, profit 500.01
    assert PhaseDay.objects.get(account=other, day=T0.date() + timedelta(days=1)).trades == 1


def test_a_delete_removes_the_deal_and_is_final(platform):
    with clock.frozen(T0):
        _, account = started_account(platform)
        gone, kept = deal(account, 500_00, msc(T0) + 1), deal(account, 200_00, msc(T0) + 2)
        consume(gone, kept, kind="trading.deal_closed")
        assert (day_row(account).pnl, day_row(account).trades) == (700_00, 2)

        consume(corrected(gone, msc(T0) + HOUR_MS, delete=True))
        consume(gone, kind="trading.deal_closed")  # redelivered: still a duplicate
        consume(corrected(gone, msc(T0) + 2 * HOUR_MS, profit=900_00))  # after a delete

    day = day_row(account)
    assert (day.pnl, day.trades) == (200_00, 1)
    row = PhaseDeal.objects.get(account=account, deal=gone["deal"])
    assert row.deleted and row.pnl == 0
    assert PhaseDealCorrection.objects.get().change == "delete"


def test_a_duplicate_and_an_older_correction_change_nothing(platform):
    with clock.frozen(T0):
        _, account = started_account(platform)
        assert account.login is not None
        loss = deal(account, -100_00, msc(T0) + HOUR_MS)
        consume(loss, kind="trading.deal_closed")
        services.record_equity(account.server, account.login, equity=9_900_00,
                               balance=9_900_00, at_msc=msc(T0) + HOUR_MS + 1)  # fmt: skip
        v1 = corrected(loss, msc(T0) + 2 * HOUR_MS, profit=-200_00)
        v2 = corrected(loss, msc(T0) + 3 * HOUR_MS, before=v1["after"], profit=-150_00)

        consume(v1, v1)
        consume(v1)
        assert (day_row(account).pnl, day_row(account).min_equity) == (-200_00, 9_800_00)
        consume(v2)
        consume(v1)  # older than what was applied
        consume(corrected(loss, msc(T0) + HOUR_MS + 5, profit=-999_00))  # older, never applied

    day = day_row(account)
    assert (day.pnl, day.min_equity) == (-150_00, 9_850_00)
    assert PhaseDealCorrection.objects.count() == 2
    assert PhaseAccount.objects.get(pk=account.pk).status == PhaseStatus.ACTIVE


def test_a_correction_of_a_deal_never_seen(platform):
    with clock.frozen(T0):
        _, account = started_account(platform)
        stranger = dict(deal(account, 900_00, msc(T0)), login=999_999)
        consume(corrected(stranger, msc(T0) + HOUR_MS, profit=100_00))
        assert not PhaseDealCorrection.objects.exists()

        unseen = deal(account, 100_00, msc(T0) + 1)  # its deal_closed comes later
        consume(corrected(unseen, msc(T0) + HOUR_MS, profit=300_00))
        consume(unseen, kind="trading.deal_closed")

    day = day_row(account)
    assert (day.pnl, day.trades) == (300_00, 1)
    entry = PhaseDealCorrection.objects.get()
    assert entry.pnl_before is None and entry.pnl_after == 300_00
    assert entry.outcome == "evaluated" and not entry.review
