"""Choosing currencies in the portal in a real browser (Playwright driving Debian's Chromium):
a client pays EUR into the USD wallet after seeing the conversion, then withdraws USD paid out
in EUR after seeing what they receive; every page fits a phone."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date

import pytest

from brokerdesk.compliance import services as compliance
from brokerdesk.compliance.kyc import KycState
from brokerdesk.payments import rates
from brokerdesk.payments import services as payments
from brokerdesk.payments.models import Deposit, Withdrawal
from brokerdesk.payments.rates import FixedRates
from tests.automations.test_browser import sign_in_as
from tests.clients.factories import individual
from tests.payments.conftest import deliver, wallet
from tests.web.conftest import verified_user
from tests.web.test_browser import CHROMIUM, page, shots, snap  # noqa: F401 - fixtures

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]


@pytest.fixture(autouse=True)
def fixed_rates() -> Iterator[None]:
    """EUR/USD 1.05 of 26 November 2026, a 1 % FX fee."""
    previous = rates.set_provider(FixedRates({"USD": "1.05"}, day=date(2026, 11, 26)))
    payments.set_rules(fx_fee_bps=100)
    yield
    rates.set_provider(previous)


def test_a_client_pays_eur_into_usd_and_withdraws_as_eur(live_server, page, shots, local_psp):  # noqa: F811
    base = live_server.url
    person = verified_user()
    client = individual(user=person)
    for step in (KycState.UNDER_VERIFICATION, KycState.APPROVED):
        compliance.transition_kyc(client.pk, step, by="system:test", reason="t", provider="sumsub")
    sign_in_as(page, base, person)

    page.goto(f"{base}/portal/wallets/deposit/")
    page.get_by_label("Amount").fill("100")
    page.get_by_label("Currency", exact=True).select_option("EUR")
    page.get_by_label("Credit my wallet in").select_option("USD")
    snap(page, shots, "fx-01-deposit-form")
    page.get_by_role("button", name="Continue to payment").click()
    review = page.get_by_test_id("deposit-review")
    assert review.get_by_text("1 EUR = 1.05 USD").is_visible()
    assert review.get_by_test_id("deposit-credit").inner_text() == "about 103.95\xa0USD"
    assert not Deposit.objects.exists()
    snap(page, shots, "fx-02-deposit-review")
    page.get_by_role("button", name="Continue to payment").click()
    page.wait_for_url(re.compile(r".*/portal/wallets/deposits/.*"))

    deposit = Deposit.objects.get()
    assert deliver(local_psp, deposit.provider_id, "complete") == "confirmed"
    page.wait_for_function(
        "document.querySelector('[data-testid=deposit-state]').dataset.state === 'confirmed'",
        timeout=15_000,
    )
    assert (
        "103.95\xa0USD went to your wallet"
        in page.get_by_test_id("deposit-conversion").inner_text()
    )
    snap(page, shots, "fx-03-deposit-credited")
    assert wallet(client.pk, "USD") == 10_395

    page.goto(f"{base}/portal/wallets/withdraw/")
    page.get_by_label("Amount").fill("50")
    page.get_by_label("Currency", exact=True).select_option("USD")
    page.get_by_label("Receive the money in").select_option("EUR")
    snap(page, shots, "fx-04-withdraw-form")
    page.get_by_role("button", name="Review withdrawal").click()
    assert page.get_by_test_id("withdraw-payout").inner_text() == "47.13\xa0EUR"
    assert page.get_by_text("1 USD = 0.952381 EUR").is_visible()
    snap(page, shots, "fx-05-withdraw-review")
    page.get_by_role("button", name="Confirm withdrawal").click()
    page.wait_for_url(f"{base}/portal/wallets/")
    assert page.get_by_text("paid out as 47.13\xa0EUR").is_visible()
    assert (
        page.get_by_test_id("payment-wallet")
        .get_by_text("from your wallet: 50.00\xa0USD")
        .is_visible()
    )
    snap(page, shots, "fx-06-wallets")
    w = Withdrawal.objects.get()
    assert (w.amount, w.currency, w.wallet_amount, w.wallet_currency) == (
        4_713,
        "EUR",
        5_000,
        "USD",
    )
