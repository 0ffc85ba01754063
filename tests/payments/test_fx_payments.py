"""Conversion on deposits and withdrawals, the negative-trading-balance check, and the daily
ECB fetch job."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from brokerdesk.core import clock
from brokerdesk.core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from brokerdesk.core.models import OutboxEvent
from brokerdesk.core.periodic import jobs
from brokerdesk.ledger import queries as ledger_queries
from brokerdesk.ledger import services as ledger
from brokerdesk.payments import queries, rates, services
from brokerdesk.payments.models import Deposit, FxRate, Withdrawal
from brokerdesk.payments.rates import FixedRates
from brokerdesk.trading.models import AccountSummary, TradingAccount
from tests.payments.conftest import deliver, funded, new_client, pay, wallet
from tests.payments.test_fx import ECB_XML

DAY = date(2026, 11, 26)


@pytest.fixture(autouse=True)
def fixed_rates() -> Iterator[None]:
    """EUR/USD 1.05 from the fixed table, a 1% FX fee."""
    previous = rates.set_provider(FixedRates({"USD": "1.05"}, day=DAY))
    services.set_rules(fx_fee_bps=100)
    yield
    rates.set_provider(previous)


def posted(purpose: str, currency: str, qualifier: str = "") -> int:
    account = ledger.system_account(purpose, currency, qualifier=qualifier)
    return ledger_queries.balance(account.id).posted


def eur_into_usd(psp: Any, client: Any, amount: int = 10_000) -> Deposit:
    """The client pays ``amount`` EUR at the PSP into their USD wallet."""
    view = services.create_deposit_intent(
        client.pk,
        amount=amount,
        currency="EUR",
        wallet_currency="USD",
        request_id=f"fx-dep-{client.pk}-{amount}",
        by="system:test",
        method_token="card_4242",
    )
    assert view.wallet_currency == "USD" and view.wallet_amount == 0
    outcome = deliver(psp, view.provider_id, "complete")
    assert outcome in ("confirmed", "held")
    return Deposit.objects.get(pk=view.id)


# ----------------------------------------------------------------------------- deposits


@pytest.mark.django_db
def test_a_deposit_paid_in_eur_is_converted_into_the_usd_wallet_with_rate_and_fee(local_psp):
    alice = new_client(verified=True)

    d = eur_into_usd(local_psp, alice)

    # 10,000 EUR cents at 1.05 → 10,500 USD cents gross; 1 % fee rounded up → 105
    assert d.status == "confirmed" and d.wallet_amount == 10_395
    assert (d.fx["gross"], d.fx["fee"]) == (10_500, 105)
    assert (d.fx["rate"], d.fx["rate_day"]) == ("1.050000000000", "2026-11-26")
    assert wallet(alice.pk, "USD") == 10_395
    assert (wallet(alice.pk, "EUR"), wallet(alice.pk, "EUR", "pending")) == (0, 0)
    assert posted("psp_clearing", "EUR", "sandbox") == -10_000
    assert (posted("fx", "EUR"), posted("fx", "USD")) == (10_000, -10_500)
    assert posted("fee_income", "USD") == 105
    view = queries.get_deposit(d.id)
    assert (view.amount, view.currency) == (10_000, "EUR")
    assert (view.wallet_currency, view.wallet_amount, view.fx_fee) == ("USD", 10_395, 105)
    assert (view.fx_rate, view.fx_rate_day) == (Decimal("1.05"), "2026-11-26")
    step = queries.timeline(d.id)[-1]
    assert step.to_status == "confirmed"
    assert step.data["fx_rate"] == "1.050000000000" and step.data["credited"] == 10_395
    event = OutboxEvent.objects.filter(type="deposit.confirmed").latest("id")
    assert (event.payload["amount"], event.payload["currency"]) == (10_395, "USD")
    assert ledger_queries.replay_ledger().clean


@pytest.mark.django_db
def test_a_replayed_confirmation_does_not_convert_twice_and_keeps_the_first_rate(local_psp):
    from brokerdesk.payments.connectors.base import NormalizedEvent

    alice = new_client(verified=True)
    d = eur_into_usd(local_psp, alice)
    rates.set_provider(FixedRates({"USD": "2.00"}))
    again = NormalizedEvent(
        provider="sandbox",
        event_id="evt_other_delivery",
        kind="deposit.succeeded",
        reference=d.reference,
        provider_id=d.provider_id,
        amount=10_000,
        currency="EUR",
        status="succeeded",
        raw={},
    )

    assert services.receive_one(again) == "already_confirmed"
    assert services.receive_one(again) == "duplicate"
    assert wallet(alice.pk, "USD") == 10_395
    assert Deposit.objects.get(pk=d.id).fx["rate"] == "1.050000000000"
    assert posted("fx", "USD") == -10_500


@pytest.mark.django_db
def test_the_recorded_rate_is_reused_when_a_confirmation_is_retried(local_psp):
    alice = new_client(verified=True)
    view = services.create_deposit_intent(
        alice.pk,
        amount=10_000,
        currency="EUR",
        wallet_currency="USD",
        request_id="fx-retry",
        by="system:test",
    )
    Deposit.objects.filter(pk=view.id).update(
        fx={"rate": "1.100000000000", "rate_day": "2026-11-25", "fee_bps": 0, "pair": "EUR/USD"}
    )

    assert deliver(local_psp, view.provider_id, "complete") == "confirmed"
    assert wallet(alice.pk, "USD") == 11_000


@pytest.mark.django_db
def test_a_held_converted_deposit_is_released_and_a_chargeback_reverses_every_leg(local_psp):
    services.set_rules(first_deposit_review_above=5_000, deposit_fee_bps=100)
    alice = new_client(verified=True)

    d = eur_into_usd(local_psp, alice)
    assert d.status == "held" and d.fee == 104  # 1 % of the 10,395 credited, rounded up
    assert (wallet(alice.pk, "USD"), wallet(alice.pk, "USD", "pending")) == (0, 10_291)

    services.release_deposit(d.id, by="user:finance-1", reason="reviewed")
    assert (wallet(alice.pk, "USD"), wallet(alice.pk, "USD", "pending")) == (10_291, 0)

    assert deliver(local_psp, d.provider_id, "chargeback") == "reversed"
    assert wallet(alice.pk, "USD") == 0 and wallet(alice.pk, "EUR", "pending") == 0
    assert posted("psp_clearing", "EUR", "sandbox") == 0
    assert (posted("fx", "EUR"), posted("fx", "USD"), posted("fee_income", "USD")) == (0, 0, 0)
    reversed_event = OutboxEvent.objects.filter(type="deposit.reversed").latest("id")
    assert reversed_event.payload["currency"] == "USD"
    assert ledger_queries.replay_ledger().clean


@pytest.mark.django_db
def test_a_converting_intent_is_idempotent_and_needs_a_rate(local_psp):
    alice = new_client(verified=True)
    kwargs: dict[str, Any] = {"amount": 10_000, "currency": "EUR", "by": "system:test"}
    first = services.create_deposit_intent(
        alice.pk, wallet_currency="USD", request_id="fx-i", **kwargs
    )

    again = services.create_deposit_intent(
        alice.pk, wallet_currency="USD", request_id="fx-i", **kwargs
    )
    assert again.replayed and again.id == first.id
    with pytest.raises(Conflict):
        services.create_deposit_intent(alice.pk, request_id="fx-i", **kwargs)
    with pytest.raises(NotFound) as no_rate:
        services.create_deposit_intent(alice.pk, wallet_currency="JPY", request_id="fx-j", **kwargs)
    assert no_rate.value.code == "no_rate"
    with pytest.raises(ValidationError) as tiny:
        services.create_deposit_intent(
            alice.pk, wallet_currency="USD", request_id="fx-l", **{**kwargs, "amount": 1}
        )
    assert tiny.value.code == "too_small"
    same = services.create_deposit_intent(
        alice.pk, wallet_currency="EUR", request_id="fx-k", **kwargs
    )
    assert same.wallet_currency == "EUR" and Deposit.objects.get(pk=same.id).wallet_currency == ""


# ----------------------------------------------------------------------------- withdrawals


def eur_payout(client: Any, method_id: Any, amount: int = 5_000, **kw: Any) -> Any:
    return services.request_withdrawal(
        client.pk,
        amount=amount,
        currency="USD",
        payout_currency="EUR",
        method_id=method_id,
        request_id=kw.pop("request_id", f"fx-wd-{client.pk}-{amount}"),
        by=f"client:{client.pk}",
        **kw,
    )


@pytest.mark.django_db
def test_a_usd_withdrawal_to_a_eur_card_fixes_the_payout_at_request_time(local_psp):
    alice = new_client(verified=True)
    d = eur_into_usd(local_psp, alice)

    w = eur_payout(alice, d.method_id)

    # 5,000 USD cents at 1/1.05 → 4,761 EUR cents gross (rounded down); fee 48 (rounded up)
    assert (w.wallet_currency, w.wallet_amount) == ("USD", 5_000)
    assert (w.amount, w.currency, w.fx_fee) == (4_713, "EUR", 48)
    assert w.fx_rate == Decimal("0.952380952381") and w.fx_rate_day == "2026-11-26"
    assert (wallet(alice.pk, "USD"), wallet(alice.pk, "USD", "locked")) == (5_395, 5_000)
    opened = queries.timeline(w.id)[0]
    assert opened.data["fx"]["rate"] == "0.952380952381" and opened.data["wallet_amount"] == 5_000

    sent = services.send_payout(w.id)
    payout = local_psp.get(sent.provider_id)
    assert (payout["amount"], payout["currency"]) == (4_713, "EUR")
    assert deliver(local_psp, sent.provider_id, "paid") == "paid"
    assert (wallet(alice.pk, "USD"), wallet(alice.pk, "USD", "locked")) == (5_395, 0)
    assert posted("psp_clearing", "EUR", "sandbox") == -10_000 + 4_713
    assert posted("fee_income", "EUR") == 48
    assert (posted("fx", "USD"), posted("fx", "EUR")) == (-10_500 + 5_000, 10_000 - 4_761)
    requested = OutboxEvent.objects.filter(type="withdrawal.requested").latest("id")
    assert (requested.payload["amount"], requested.payload["currency"]) == (5_000, "USD")

    # returned after payout: the wallet amount comes back exactly, the FX fee too
    assert deliver(local_psp, sent.provider_id, "return") == "returned"
    assert (wallet(alice.pk, "USD"), wallet(alice.pk, "USD", "locked")) == (10_395, 0)
    assert posted("psp_clearing", "EUR", "sandbox") == -10_000
    assert posted("fee_income", "EUR") == 0
    assert ledger_queries.replay_ledger().clean


@pytest.mark.django_db
def test_a_rejected_or_failed_converted_withdrawal_gives_back_the_wallet_amount_exactly(
    local_psp,
):
    alice = new_client(verified=True)
    d = eur_into_usd(local_psp, alice)
    w = eur_payout(alice, d.method_id, 3_333)

    services.reject_withdrawal(w.id, by="user:finance-2", reason="wrong card")
    assert (wallet(alice.pk, "USD"), wallet(alice.pk, "USD", "locked")) == (10_395, 0)

    w2 = eur_payout(alice, d.method_id, 7_777)
    sent = services.send_payout(w2.id)
    assert deliver(local_psp, sent.provider_id, "fail") == "failed"
    assert (wallet(alice.pk, "USD"), wallet(alice.pk, "USD", "locked")) == (10_395, 0)
    assert posted("fee_income", "EUR") == 0 and posted("psp_clearing", "EUR", "sandbox") == -10_000
    assert ledger_queries.replay_ledger().clean


@pytest.mark.django_db
def test_a_converted_withdrawal_replays_and_keeps_return_to_source(local_psp):
    alice = new_client(verified=True)
    d = eur_into_usd(local_psp, alice)
    first = eur_payout(alice, d.method_id, request_id="fx-wd-r")

    again = eur_payout(alice, d.method_id, request_id="fx-wd-r", rates=FixedRates({"USD": "2"}))
    assert again.replayed and again.amount == first.amount == 4_713
    with pytest.raises(Conflict):
        services.request_withdrawal(
            alice.pk,
            amount=5_000,
            currency="USD",
            method_id=d.method_id,
            request_id="fx-wd-r",
            by=f"client:{alice.pk}",
        )
    with pytest.raises(Exception) as not_source:  # the card never paid in USD
        services.request_withdrawal(
            alice.pk,
            amount=1_000,
            currency="USD",
            method_id=d.method_id,
            request_id="fx-wd-usd",
            by=f"client:{alice.pk}",
        )
    assert getattr(not_source.value, "code", "") == "not_return_to_source"
    assert Withdrawal.objects.count() == 1


# ----------------------------------------------------------------------------- trading


def trading_account(client: Any, *, balance: int, equity: int, live: bool = True) -> None:
    now = clock.now()
    login = 70_000 + TradingAccount.objects.count()
    TradingAccount.objects.create(
        server="sim",
        login=login,
        client_id=str(client.pk),
        currency="USD",
        group="real\\std" if live else "demo\\std",
        leverage=100,
        is_live=live,
        created_at=now,
        updated_at=now,
    )
    AccountSummary.objects.create(server="sim", login=login, balance=balance, equity=equity)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("balance", "equity"), [(-500, -500), (1_000, -20)], ids=["balance", "equity"]
)
def test_a_negative_trading_balance_or_equity_blocks_withdrawals(local_psp, balance, equity):
    alice = new_client(verified=True)
    d = funded(local_psp, alice, 50_000)
    trading_account(alice, balance=10_000, equity=10_000)
    trading_account(alice, balance=balance, equity=equity)

    with pytest.raises(PermissionDenied) as refused:
        services.request_withdrawal(
            alice.pk,
            amount=1_000,
            currency="USD",
            method_id=d.method_id,
            request_id="neg-1",
            by=f"client:{alice.pk}",
        )

    assert refused.value.code == "negative_trading_balance"
    assert "negative trading balance" in refused.value.message
    assert Withdrawal.objects.count() == 0 and wallet(alice.pk) == 50_000


@pytest.mark.django_db
def test_a_negative_demo_account_does_not_block_withdrawals(local_psp):
    alice = new_client(verified=True)
    d = funded(local_psp, alice, 50_000)
    trading_account(alice, balance=-5_000, equity=-5_000, live=False)
    trading_account(alice, balance=0, equity=0)

    w = services.request_withdrawal(
        alice.pk,
        amount=1_000,
        currency="USD",
        method_id=d.method_id,
        request_id="neg-2",
        by=f"client:{alice.pk}",
    )
    assert w.status == "approved"


# ----------------------------------------------------------------------------- the ECB job


@pytest.fixture
def fresh_fetch_state() -> Iterator[None]:
    previous = rates._FETCHED_ON
    rates._FETCHED_ON = None
    yield
    rates._FETCHED_ON = previous


def at(day: int, hour: int) -> datetime:
    return datetime(2026, 11, day, hour, 0, tzinfo=UTC)


@pytest.mark.django_db
@pytest.mark.usefixtures("fresh_fetch_state")
def test_the_ecb_job_imports_once_a_day_and_tolerates_failures():
    import brokerdesk.payments.consumers  # noqa: F401 (registers the job)

    assert "payments.fetch_ecb_rates" in jobs()
    calls: list[int] = []

    def fetch() -> bytes:
        calls.append(1)
        return ECB_XML.encode()

    def broken() -> bytes:
        raise OSError("network is unreachable")

    # nothing stored yet: fetched at once, even before publication time; a failure is logged
    assert rates.fetch_ecb_if_due(broken, now=at(26, 6)) == 0
    assert rates.fetch_ecb_if_due(fetch, now=at(26, 6)) == 6
    # rates stored: not before publication time, then once that day
    assert rates.fetch_ecb_if_due(fetch, now=at(27, 9)) is None
    assert rates.fetch_ecb_if_due(broken, now=at(27, 16)) == 0
    assert rates.fetch_ecb_if_due(fetch, now=at(27, 16)) == 0  # the file brought nothing new
    assert rates.fetch_ecb_if_due(fetch, now=at(27, 17)) is None
    assert len(calls) == 2
    assert FxRate.objects.filter(source="ecb").count() == 6
    # a bad file is a failure like any other
    assert rates.fetch_ecb_if_due(lambda: b"<junk", now=at(28, 16)) == 0
    assert rates.fetch_ecb_if_due(fetch, now=at(28, 16)) == 0
    assert len(calls) == 3


@pytest.mark.django_db
@pytest.mark.usefixtures("fresh_fetch_state")
def test_the_ecb_job_skips_a_day_whose_rates_are_already_stored():
    import_day = ECB_XML.replace("2026-11-26", "2026-11-29")
    rates.import_ecb_xml(import_day)

    def fetch() -> bytes:
        raise AssertionError("not fetched")

    assert rates.fetch_ecb_if_due(fetch, now=at(29, 18)) is None


@pytest.mark.django_db(transaction=True)
def test_a_converting_deposit_through_the_live_webhook_path_posts_once(sandbox):
    sandbox.faults.update({"duplicate": "instant"})
    alice = new_client(verified=True)
    view = services.create_deposit_intent(
        alice.pk,
        amount=10_000,
        currency="EUR",
        wallet_currency="USD",
        request_id="fx-live",
        by="system:test",
        method_token="card_4242",
    )

    pay(sandbox, view)

    d = Deposit.objects.get(pk=view.id)
    assert d.status == "confirmed" and d.wallet_amount == 10_395
    assert len([x for x in sandbox.deliveries if x["status"] == 200]) == 2
    assert wallet(alice.pk, "USD") == 10_395
    assert posted("fx", "USD") == -10_500
    assert ledger_queries.replay_ledger().clean
