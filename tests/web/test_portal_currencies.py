"""The portal's choice of currency on deposits and withdrawals: the wallet a deposit credits,
the currency a withdrawal is paid out in, the conversion shown before confirming, refusals
that write nothing, and the single-currency forms left as simple as they were."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from django.test import Client as HttpClient

from brokerdesk.payments import queries as payment_queries
from brokerdesk.payments import rates, services
from brokerdesk.payments.models import Deposit, Withdrawal
from brokerdesk.payments.rates import FixedRates
from tests.web.test_portal_pages import approve, cash, pay, psp, signed_up  # noqa: F401

pytestmark = pytest.mark.django_db

DEPOSIT = "/portal/wallets/deposit/"
WITHDRAW = "/portal/wallets/withdraw/"
DAY = date(2026, 11, 26)
NBSP = "\N{NO-BREAK SPACE}"


@pytest.fixture(autouse=True)
def fast_passwords(settings: Any) -> None:
    """A cheap password hasher: these tests sign people up and in."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def fixed_rates() -> Iterator[None]:
    """EUR/USD 1.05 (no GBP rate), a 1 % FX fee."""
    previous = rates.set_provider(FixedRates({"USD": "1.05"}, day=DAY))
    before = services.set_rules(fx_fee_bps=100)
    yield
    rates.set_provider(previous)
    services.set_rules(fx_fee_bps=before.fx_fee_bps)


def eur_into_usd(client: HttpClient, psp: Any, amount: str = "100") -> Deposit:  # noqa: F811
    """Pay ``amount`` EUR into the USD wallet through the review step; the PSP confirms."""
    form = {"amount": amount, "currency": "EUR", "wallet_currency": "USD", "request_id": "fx1"}
    made = client.post(DEPOSIT, {**form, "confirm": "1"})
    assert made.status_code == 302, made.content.decode()[-3000:]
    deposit = Deposit.objects.get()
    pay(psp, deposit.provider_id)
    deposit.refresh_from_db()
    return deposit


def test_a_single_currency_broker_keeps_the_simple_forms(client, psp, settings):  # noqa: F811
    settings.PORTAL_WALLET_CURRENCIES = ["USD"]
    client_id = signed_up(client)
    approve(client_id)

    page = client.get(DEPOSIT).content.decode()
    assert 'name="wallet_currency"' not in page and "Credit my wallet in" not in page
    made = client.post(DEPOSIT, {"amount": "50", "currency": "USD", "request_id": "d1"})
    assert made.status_code == 302  # straight to the payment, no conversion step
    pay(psp, payment_queries.deposits_of(client_id)[0].provider_id)
    withdraw = client.get(WITHDRAW).content.decode()
    assert 'name="payout_currency"' not in withdraw and "Receive the money in" not in withdraw


def test_a_deposit_paid_in_eur_shows_the_conversion_then_credits_the_usd_wallet(client, psp):  # noqa: F811
    client_id = signed_up(client)
    approve(client_id)

    page = client.get(DEPOSIT).content.decode()
    assert "Credit my wallet in" in page and "The currency I pay in" in page
    form = {"amount": "100", "currency": "EUR", "wallet_currency": "USD", "request_id": "fx1"}
    review = client.post(DEPOSIT, form)
    html = review.content.decode()
    assert review.status_code == 200 and 'data-testid="deposit-review"' in html
    assert f"100.00{NBSP}EUR" in html and "1 EUR = 1.05 USD" in html
    # 10,000 EUR cents at 1.05 → 10,500 USD cents; the 1 % fee rounded up → 105
    assert f"1.05{NBSP}USD" in html and f"about 103.95{NBSP}USD" in html
    assert 'name="confirm" value="1"' in html
    assert not Deposit.objects.exists()  # nothing before the client confirms

    deposit = eur_into_usd(client, psp)

    assert (deposit.currency, deposit.amount, deposit.wallet_currency) == ("EUR", 10_000, "USD")
    assert cash(client_id, "USD") == 10_395 and cash(client_id, "EUR") == 0
    status = client.get(f"/portal/wallets/deposits/{deposit.pk}/").content.decode()
    assert (
        f"You paid 100.00{NBSP}EUR: 103.95{NBSP}USD went to your wallet at 1 EUR = 1.05 USD "
        f"(conversion fee 1.05{NBSP}USD)." in status
    )
    wallets = client.get("/portal/wallets/").content.decode()
    assert f"into your wallet: 103.95{NBSP}USD" in wallets


def test_a_same_currency_deposit_needs_no_conversion_step(client, psp):  # noqa: F811
    client_id = signed_up(client)
    approve(client_id)
    form = {"amount": "20", "currency": "EUR", "wallet_currency": "", "request_id": "same"}
    assert client.post(DEPOSIT, form).status_code == 302
    (deposit,) = payment_queries.deposits_of(client_id)
    assert (deposit.currency, deposit.wallet_currency) == ("EUR", "EUR")


def test_a_deposit_into_a_wallet_without_a_rate_is_refused_and_writes_nothing(client, psp):  # noqa: F811
    client_id = signed_up(client)
    approve(client_id)
    form = {"amount": "100", "currency": "EUR", "wallet_currency": "GBP", "request_id": "g"}

    for data in (form, {**form, "confirm": "1"}):  # the review, and a confirm sent without it
        html = client.post(DEPOSIT, data).content.decode()
        assert "We cannot convert EUR into GBP at the moment. Choose EUR, or try again later." in (
            html
        )
    tiny = client.post(DEPOSIT, {**form, "wallet_currency": "USD", "amount": "0.01"})
    assert "The amount is too small to convert into USD." in tiny.content.decode()
    unknown = client.post(DEPOSIT, {**form, "wallet_currency": "XYZ", "confirm": "1"})
    assert "Select a valid choice." in unknown.content.decode()
    assert not Deposit.objects.exists() and cash(client_id, "GBP") == 0


def test_a_withdrawal_paid_out_in_another_currency_shows_what_the_client_receives(client, psp):  # noqa: F811
    client_id = signed_up(client)
    approve(client_id)
    eur_into_usd(client, psp)  # the card deposited EUR: EUR payouts may go back to it
    (method,) = payment_queries.withdrawal_methods(client_id)
    form = {"amount": "50", "currency": "USD", "payout_currency": "EUR",
            "method": str(method.id), "request_id": "w1"}  # fmt: skip

    page = client.get(WITHDRAW).content.decode()
    assert "Receive the money in" in page and "The wallet&#x27;s currency" in page
    review = client.post(WITHDRAW, form).content.decode()
    # 5,000 USD cents at 1/1.05 → 4,761 EUR cents (rounded down); fee 47.61 → 48 (up)
    assert "1 USD = 0.952381 EUR" in review and f"0.48{NBSP}EUR" in review and "(1%)" in review
    assert f'data-testid="withdraw-payout">47.13{NBSP}EUR' in review
    quoted = "0.952380952381"
    assert f'name="quoted_rate" value="{quoted}"' in review
    assert not Withdrawal.objects.exists()

    done = client.post(WITHDRAW, {**form, "confirm": "1", "quoted_rate": quoted}, follow=True)

    assert "Your withdrawal of 50.00\xa0USD was requested, paid out as 47.13\xa0EUR." in (
        done.content.decode()
    )
    (w,) = Withdrawal.objects.all()
    assert (w.amount, w.currency, w.wallet_currency, w.wallet_amount) == (4_713, "EUR", "USD",
                                                                            5_000)  # fmt: skip
    assert cash(client_id, "USD") == 10_395 - 5_000
    wallets = client.get("/portal/wallets/").content.decode()
    assert f"from your wallet: 50.00{NBSP}USD" in wallets


def test_a_rate_that_moved_before_confirming_is_shown_again(client, psp):  # noqa: F811
    client_id = signed_up(client)
    approve(client_id)
    eur_into_usd(client, psp)
    (method,) = payment_queries.withdrawal_methods(client_id)
    form = {"amount": "50", "currency": "USD", "payout_currency": "EUR",
            "method": str(method.id), "request_id": "w1", "confirm": "1",
            "quoted_rate": "0.952380952381"}  # fmt: skip
    rates.set_provider(FixedRates({"USD": "1.10"}, day=DAY))

    moved = client.post(WITHDRAW, form).content.decode()
    assert "The exchange rate changed while you were reviewing." in moved
    assert "1 USD = 0.909091 EUR" in moved and not Withdrawal.objects.exists()
    unseen = client.post(WITHDRAW, {k: v for k, v in form.items() if k != "quoted_rate"})
    assert "The exchange rate changed" in unseen.content.decode()
    assert not Withdrawal.objects.exists()

    again = client.post(WITHDRAW, {**form, "quoted_rate": "0.909090909091"})
    assert again.status_code == 302 and Withdrawal.objects.get().currency == "EUR"


def test_a_payout_currency_that_cannot_be_paid_is_refused_and_writes_nothing(client, psp):  # noqa: F811
    client_id = signed_up(client)
    approve(client_id)
    eur_into_usd(client, psp)
    (method,) = payment_queries.withdrawal_methods(client_id)
    form = {"amount": "50", "currency": "USD", "method": str(method.id), "request_id": "w"}

    no_rate = client.post(WITHDRAW, {**form, "payout_currency": "GBP"}).content.decode()
    assert "We cannot convert USD into GBP at the moment. Choose USD, or try again later." in (
        no_rate
    )
    # the card only ever paid EUR: a USD payout cannot go back to it
    not_source = client.post(WITHDRAW, {**form, "payout_currency": "", "confirm": "1"})
    assert "Return to source: withdraw to a method the client deposited USD with." in (
        not_source.content.decode()
    )
    bogus = client.post(WITHDRAW, {**form, "payout_currency": "XYZ", "confirm": "1"})
    assert "Select a valid choice." in bogus.content.decode()
    assert not Withdrawal.objects.exists() and cash(client_id, "USD") == 10_395
