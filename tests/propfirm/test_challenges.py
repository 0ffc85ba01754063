"""Challenges on the database and the platform: purchase, accounts, evaluation, decisions."""

from __future__ import annotations

from datetime import timedelta

import pytest

from brokerdesk.core import clock
from brokerdesk.core.errors import Conflict, IllegalTransition, PermissionDenied, ValidationError
from brokerdesk.core.models import AuditEntry, OutboxEvent
from brokerdesk.ledger import queries as ledger_queries
from brokerdesk.ledger.errors import InsufficientFunds
from brokerdesk.propfirm import services
from brokerdesk.propfirm.models import (
    Challenge,
    ChallengeStatus,
    PhaseAccount,
    PhaseDay,
    PhaseStatus,
    Product,
)
from brokerdesk.staff.roles import Role, grant_role
from brokerdesk.trading.models import TradingAccount
from brokerdesk.trading.simulator.engine import EngineError
from tests.clients.factories import individual
from tests.propfirm.conftest import (
    DAY_MS,
    EVALUATION,
    FUNDED,
    T0,
    VERIFICATION,
    Platform,
    deal,
    make_product,
    msc,
    started_account,
    verified_client,
    wallet_cash,
)
from tests.web.conftest import verified_user

pytestmark = pytest.mark.django_db


def events_of(kind: str) -> list[dict]:  # type: ignore[type-arg]
    return [e.payload for e in OutboxEvent.objects.filter(type=kind).order_by("occurred_at")]


# --- purchase --------------------------------------------------------------------------------


def test_a_purchase_debits_the_wallet_once_and_a_repeat_returns_the_same_challenge():
    product = make_product()
    client = verified_client(cash=150_00)

    first = services.purchase_challenge(client, product.pk, request_id="buy-1", by="system:test")
    again = services.purchase_challenge(client, product.pk, request_id="buy-1", by="system:test")

    assert again.pk == first.pk and Challenge.objects.count() == 1
    assert wallet_cash(client) == 150_00 - 99_00
    fees = services.fee_account("USD")
    assert ledger_queries.balance(fees.id).posted == 99_00
    assert first.status == ChallengeStatus.ACTIVE
    assert PhaseAccount.objects.get(challenge=first).status == PhaseStatus.PENDING
    [bought] = events_of("challenge.purchased")
    assert bought["challenge_id"] == str(first.pk) and bought["phase"] == "Evaluation"
    assert bought["figures"]["price"] == 99_00
    assert AuditEntry.objects.filter(action="propfirm.challenge_purchased").count() == 1


def test_a_request_id_reused_for_another_product_is_a_conflict():
    product, other = make_product(), make_product()
    client = verified_client(cash=300_00)
    services.purchase_challenge(client, product.pk, request_id="buy-2", by="system:test")

    with pytest.raises(Conflict) as error:
        services.purchase_challenge(client, other.pk, request_id="buy-2", by="system:test")
    assert error.value.code == "idempotency_conflict"
    assert wallet_cash(client) == 300_00 - 99_00


def test_a_purchase_without_the_money_writes_nothing():
    product = make_product()
    client = verified_client(cash=98_99)

    with pytest.raises(InsufficientFunds):
        services.purchase_challenge(client, product.pk, request_id="buy-3", by="system:test")
    assert not Challenge.objects.exists() and not PhaseAccount.objects.exists()
    assert wallet_cash(client) == 98_99 and not events_of("challenge.purchased")


def test_an_unverified_client_is_refused_by_the_compliance_policy():
    product = make_product()
    client = individual().pk

    with pytest.raises(PermissionDenied) as error:
        services.purchase_challenge(client, product.pk, request_id="buy-4", by="system:test")
    assert error.value.field == "client_id" and not Challenge.objects.exists()


def test_a_product_no_longer_sold_cannot_be_bought():
    product = make_product()
    services.set_product_active(product.pk, False, by="system:test")
    client = verified_client(cash=100_00)

    with pytest.raises(Conflict) as error:
        services.purchase_challenge(client, product.pk, request_id="buy-5", by="system:test")
    assert error.value.code == "product_inactive"


# --- accounts on the platform ----------------------------------------------------------------


def test_opening_the_phase_account_creates_a_funded_login_in_the_challenge_group(platform):
    with clock.frozen(T0):
        client, account = started_account(platform, EVALUATION, FUNDED)

    assert account.status == PhaseStatus.ACTIVE and account.login
    user = platform.port.get_user(account.login)
    assert user.group == "demo\\standard" and user.trade_enabled
    assert platform.balance(account.login) == 10_000_00
    registered = TradingAccount.objects.get(login=account.login)
    assert registered.client_id == str(client) and registered.is_live is False
    # opening again neither creates a second login nor funds twice
    services.open_phase_account(account.pk, port=platform.port)
    assert platform.balance(account.login) == 10_000_00
    assert TradingAccount.objects.filter(client_id=str(client)).count() == 1
    assert events_of("challenge.started")[0]["figures"]["login"] == account.login


# --- evaluation ------------------------------------------------------------------------------


def test_a_daily_loss_breach_fails_the_challenge_and_disables_trading_on_the_platform(
    platform: Platform,
):
    with clock.frozen(T0):
        _, account = started_account(platform)
        at = msc(T0 + timedelta(hours=5))
        assert account.login is not None
        services.record_equity(account.server, account.login, equity=9_500_00, balance=10_000_00,
                               at_msc=at)  # fmt: skip
        assert PhaseAccount.objects.get(pk=account.pk).status == PhaseStatus.ACTIVE
        assert platform.trade_allowed(account.login)
        services.enforce(account.pk, port=platform.port)  # nothing to enforce yet
        services.record_equity(account.server, account.login, equity=9_470_00, balance=10_000_00,
                               at_msc=at + 60_000)  # fmt: skip

    failed = PhaseAccount.objects.get(pk=account.pk)
    assert failed.status == PhaseStatus.FAILED and failed.rule == "daily_loss"
    assert failed.figures["equity"] == 9_470_00 and failed.figures["reference"] == 10_000_00
    assert failed.challenge.status == ChallengeStatus.FAILED
    assert failed.platform_pending  # decided; the platform hears after the commit
    services.enforce(account.pk, port=platform.port)
    assert not platform.trade_allowed(account.login)
    with pytest.raises(EngineError):
        platform.engine.open_position(account.login, "EURUSD", 0, 10_000)
    assert not PhaseAccount.objects.get(pk=account.pk).platform_pending
    [event] = events_of("challenge.failed")
    assert event["rule"] == "daily_loss" and event["figures"]["loss"] == 530_00
    assert AuditEntry.objects.filter(action="propfirm.phase_failed").count() == 1
    assert AuditEntry.objects.filter(action="propfirm.trading_disabled").count() == 1


def test_the_decision_reaches_the_platform_after_commit(
    platform, django_capture_on_commit_callbacks
):
    with clock.frozen(T0):
        _, account = started_account(platform)
        assert account.login is not None
        with django_capture_on_commit_callbacks(execute=True):
            services.record_equity(account.server, account.login, equity=8_999_99,
                                   balance=10_000_00, at_msc=msc(T0))  # fmt: skip

    assert PhaseAccount.objects.get(pk=account.pk).rule == "daily_loss"
    assert not platform.trade_allowed(account.login)


def test_passing_opens_the_next_phase_and_the_last_pass_funds_the_trader(platform):
    with clock.frozen(T0) as c:
        client, evaluation = started_account(platform, EVALUATION, VERIFICATION, FUNDED)
        assert evaluation.login is not None
        services.record_closed_deals([deal(evaluation, 500_00, msc(c.current)),
                                      deal(evaluation, 299_99, msc(c.current))])  # fmt: skip
        assert PhaseAccount.objects.get(pk=evaluation.pk).status == PhaseStatus.ACTIVE
        services.record_closed_deals([deal(evaluation, 1, msc(c.current))])

        passed = PhaseAccount.objects.get(pk=evaluation.pk)
        assert passed.status == PhaseStatus.PASSED and passed.rule == "profit_target"
        services.enforce(passed.pk, port=platform.port)
        assert not platform.trade_allowed(evaluation.login)
        verification = PhaseAccount.objects.get(challenge=passed.challenge, phase_index=1)
        assert verification.status == PhaseStatus.ACTIVE and verification.login != evaluation.login
        assert platform.balance(verification.login) == 10_000_00

        c.advance(timedelta(days=1))
        services.record_closed_deals([deal(verification, 500_00, msc(c.current))])
        services.enforce(verification.pk, port=platform.port)

    challenge = Challenge.objects.get(pk=passed.challenge_id)
    assert challenge.status == ChallengeStatus.FUNDED and challenge.phase_index == 2
    funded = PhaseAccount.objects.get(challenge=challenge, phase_index=2)
    assert funded.funded and funded.status == PhaseStatus.ACTIVE
    assert [e["phase"] for e in events_of("challenge.passed")] == ["Evaluation", "Verification"]
    assert events_of("challenge.funded")[0]["client_id"] == str(client)


def test_duplicated_and_reordered_events_change_nothing(platform):
    with clock.frozen(T0):
        _, first = started_account(platform)
        _, second = started_account(platform)
    assert first.login is not None and second.login is not None
    day1, day2 = msc(T0), msc(T0) + DAY_MS
    deals_in_order = [
        deal(first, 300_00, day1, ticket=1), deal(first, -100_00, day1 + 5, ticket=2),
        deal(first, 200_00, day2, ticket=3), deal(first, -50_00, day2 + 9, ticket=4),
    ]  # fmt: skip
    readings = [(day1 + 1, 9_950_00), (day1 + 7, 10_150_00), (day2 + 3, 9_990_00)]

    with clock.frozen(T0 + timedelta(days=2)):
        for d in deals_in_order:
            services.record_closed_deals([d])
        for at, equity in readings:
            services.record_equity(first.server, first.login, equity=equity, balance=0, at_msc=at)
        # the other account gets the same facts reversed, each twice
        mirrored = [dict(d, login=second.login) for d in reversed(deals_in_order)]
        services.record_closed_deals(mirrored + mirrored)
        for at, equity in [*reversed(readings), *readings]:
            services.record_equity(second.server, second.login, equity=equity, balance=0,
                                   at_msc=at)  # fmt: skip
        services.record_closed_deals(mirrored[:2])

    def facts(account):  # type: ignore[no-untyped-def]
        return [
            (d.day, d.pnl, d.trades, d.min_equity, d.min_equity_msc, d.max_equity)
            for d in PhaseDay.objects.filter(account=account).order_by("day")
        ]

    a, b = PhaseAccount.objects.get(pk=first.pk), PhaseAccount.objects.get(pk=second.pk)
    assert facts(a) == facts(b)
    assert facts(a)[0][:3] == (T0.date(), 200_00, 2) and facts(a)[1][1] == 150_00
    assert (a.status, a.last_equity) == (b.status, b.last_equity) == (PhaseStatus.ACTIVE, 9_990_00)


def test_deals_of_logins_that_are_not_challenges_are_ignored(platform):
    with clock.frozen(T0):
        _, account = started_account(platform)

    stray = dict(deal(account, 900_00, msc(T0)), login=999_999)
    assert services.record_closed_deals([stray]) == 0
    assert not services.record_equity("sim", 999_999, equity=1, balance=1, at_msc=msc(T0))


def test_the_time_limit_fails_a_phase_when_its_deadline_passes(platform):
    timed = dict(EVALUATION, time_limit_days=30)
    with clock.frozen(T0) as c:
        _, account = started_account(platform, timed, FUNDED)
        c.advance(timedelta(days=30) - timedelta(seconds=1))
        assert services.expire_deadlines() == 0
        c.advance(timedelta(seconds=1))
        assert services.expire_deadlines() == 1

    expired = PhaseAccount.objects.get(pk=account.pk)
    assert expired.status == PhaseStatus.FAILED and expired.rule == "time_limit"


def test_deals_closed_after_the_deadline_do_not_count(platform):
    timed = dict(EVALUATION, time_limit_days=30)
    with clock.frozen(T0):
        _, account = started_account(platform, timed, FUNDED)
    late = msc(T0 + timedelta(days=30, seconds=1))

    with clock.frozen(T0 + timedelta(days=30, minutes=1)):
        assert services.record_closed_deals([deal(account, 900_00, late)]) == 0

    assert PhaseAccount.objects.get(pk=account.pk).rule == "time_limit"


def test_a_challenge_keeps_the_rules_it_was_bought_under(platform):
    with clock.frozen(T0):
        _, account = started_account(platform, EVALUATION, FUNDED)
        product = account.challenge.product
        harder = dict(EVALUATION, profit_target_bps=2000)
        revised = services.revise_product(product.pk, phases=[harder, FUNDED], by="system:test")
        services.record_closed_deals([deal(account, 800_00, msc(T0))])

    assert (
        revised.version == 2
        and revised.active
        and not type(product).objects.get(pk=product.pk).active
    )
    assert PhaseAccount.objects.get(pk=account.pk).status == PhaseStatus.PASSED


# --- staff decisions -------------------------------------------------------------------------


def test_staff_fail_or_pass_by_hand_with_a_reason_and_others_are_refused(platform):
    dealer = verified_user()
    grant_role(dealer, Role.DEALING)
    support = verified_user()
    grant_role(support, Role.SUPPORT)
    with clock.frozen(T0):
        _, account = started_account(platform)
        _, other = started_account(platform)

        with pytest.raises(PermissionDenied):
            services.decide_manually(account.pk, "fail", reason="abuse", by=support)
        with pytest.raises(ValidationError) as error:
            services.decide_manually(account.pk, "fail", reason=" ", by=dealer)
        assert error.value.field == "reason"
        services.decide_manually(account.pk, "fail", reason="Copy trading between accounts",
                                 by=dealer)  # fmt: skip
        services.decide_manually(other.pk, "pass", reason="Platform outage", by=dealer)
        with pytest.raises(IllegalTransition):
            services.decide_manually(account.pk, "pass", reason="changed my mind", by=dealer)

    failed = PhaseAccount.objects.get(pk=account.pk)
    assert failed.rule == "manual" and failed.decided_by == f"user:{dealer.pk}"
    entry = AuditEntry.objects.get(action="propfirm.phase_failed")
    assert entry.reason == "Copy trading between accounts"
    assert PhaseAccount.objects.get(pk=other.pk).status == PhaseStatus.PASSED


def test_the_demo_seed_is_idempotent():
    from brokerdesk.propfirm import demo

    first = demo.seed()
    second = demo.seed()

    assert first == second and "trader@example.com" in first
    assert Product.objects.filter(code__in=["classic-10k", "rapid-25k"]).count() == 2
    assert Challenge.objects.count() == 2 and PhaseAccount.objects.count() == 2


def test_the_equity_poll_reads_the_platform_and_catches_a_floating_loss(
    platform, django_capture_on_commit_callbacks
):
    _, account = started_account(platform)
    assert account.login is not None
    platform.engine.set_price("EURUSD", 1.10000)
    platform.engine.open_position(account.login, "EURUSD", 0, 10_000)  # buy one lot
    platform.engine.set_price("EURUSD", 1.09700)  # about -300 USD floating: within the rules

    assert services.poll_equity() == 1
    polled = PhaseAccount.objects.get(pk=account.pk)
    assert polled.status == PhaseStatus.ACTIVE
    assert polled.last_equity == platform.port.account_state(account.login).equity < 10_000_00

    platform.engine.set_price("EURUSD", 1.09400)  # about -600 USD: more than 5 % in a day
    with django_capture_on_commit_callbacks(execute=True):
        services.poll_equity()

    failed = PhaseAccount.objects.get(pk=account.pk)
    assert failed.rule == "daily_loss" and failed.figures["loss"] > 500_00
    assert not platform.trade_allowed(account.login)
