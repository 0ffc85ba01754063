"""Multi-currency: the rates port (fixed table, ECB reference rates) and wallet conversions."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from brokerdesk.core.errors import Conflict, NotFound, ValidationError
from brokerdesk.ledger import queries as ledger_queries
from brokerdesk.ledger import services as ledger
from brokerdesk.ledger.errors import InsufficientFunds
from brokerdesk.payments import services
from brokerdesk.payments.rates import EcbRates, FixedRates, import_ecb_xml, parse_ecb_xml
from tests.payments.conftest import funded, new_client, wallet

ECB_XML = """<?xml version="1.0" encoding="UTF-8"?>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01"
    xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
  <gesmes:subject>Reference rates</gesmes:subject>
  <gesmes:Sender><gesmes:name>European Central Bank</gesmes:name></gesmes:Sender>
  <Cube>
    <Cube time="2026-11-26">
      <Cube currency="USD" rate="1.0500"/>
      <Cube currency="JPY" rate="160.00"/>
      <Cube currency="GBP" rate="0.8400"/>
    </Cube>
    <Cube time="2026-11-25">
      <Cube currency="USD" rate="1.0400"/>
      <Cube currency="JPY" rate="159.00"/>
      <Cube currency="GBP" rate="0.8300"/>
    </Cube>
  </Cube>
</gesmes:Envelope>"""


def test_the_ecb_file_parses_into_rates_per_day():
    days = parse_ecb_xml(ECB_XML)

    assert set(days) == {date(2026, 11, 26), date(2026, 11, 25)}
    assert days[date(2026, 11, 26)]["USD"] == Decimal("1.0500")


@pytest.mark.parametrize(
    "bad",
    [
        "not xml",
        "<a/>",
        ECB_XML.replace('rate="1.0500"', 'rate="-1"'),
        ECB_XML.replace('rate="1.0500"', 'rate="abc"'),
        '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
    ],
    ids=["garbage", "no-rates", "negative", "not-a-number", "external-entity"],
)
def test_a_bad_or_hostile_ecb_file_is_refused(bad):
    with pytest.raises(ValidationError) as error:
        parse_ecb_xml(bad)
    assert error.value.code == "bad_rates_file"


@pytest.mark.django_db
def test_imported_ecb_rates_give_the_latest_days_cross_rates_and_import_once():
    assert import_ecb_xml(ECB_XML) == 6
    assert import_ecb_xml(ECB_XML) == 0

    usd_jpy = EcbRates().rate("USD", "JPY")
    assert usd_jpy.day == date(2026, 11, 26)
    assert usd_jpy.rate == (Decimal("160") / Decimal("1.05")).quantize(Decimal("1e-12"))
    assert EcbRates().rate("EUR", "USD", on=date(2026, 11, 25)).rate == Decimal("1.04")
    with pytest.raises(NotFound):
        EcbRates().rate("USD", "CHF")


@pytest.mark.django_db
def test_no_ecb_rates_yet_is_a_clear_error():
    with pytest.raises(NotFound) as error:
        EcbRates().rate("EUR", "USD")
    assert error.value.code == "no_rates"


@pytest.mark.django_db
def test_a_wallet_conversion_posts_sell_buy_and_fee_with_the_rate_explicit(local_psp):
    services.set_rules(fx_fee_bps=100)
    alice = new_client(verified=True)
    funded(local_psp, alice, 100_000, "EUR")
    rates = FixedRates({"USD": "1.05"}, day=date(2026, 11, 26))

    result = services.convert_wallet(
        alice.pk,
        from_currency="EUR",
        to_currency="USD",
        sell_amount=10_000,
        request_id="fx-1",
        by="system:test",
        rates=rates,
    )

    assert (result.rate, result.rate_day) == (Decimal("1.05"), date(2026, 11, 26))
    assert (result.bought, result.fee) == (10_395, 105)  # 10,500 gross, 1% fee rounded up
    assert (wallet(alice.pk, "EUR"), wallet(alice.pk, "USD")) == (90_000, 10_395)
    income = ledger_queries.balance(ledger.system_account("fee_income", "USD").id).posted
    fx_usd = ledger_queries.balance(ledger.system_account("fx", "USD").id).posted
    fx_eur = ledger_queries.balance(ledger.system_account("fx", "EUR").id).posted
    assert (income, fx_usd, fx_eur) == (105, -10_500, 10_000)
    assert ledger_queries.replay_ledger().clean


@pytest.mark.django_db
def test_a_repeated_conversion_request_replays_at_the_first_rate(local_psp):
    alice = new_client(verified=True)
    funded(local_psp, alice, 100_000, "EUR")
    first = services.convert_wallet(
        alice.pk,
        from_currency="EUR",
        to_currency="USD",
        sell_amount=10_000,
        request_id="fx-2",
        by="system:test",
        rates=FixedRates({"USD": "1.05"}),
    )

    again = services.convert_wallet(
        alice.pk,
        from_currency="EUR",
        to_currency="USD",
        sell_amount=10_000,
        request_id="fx-2",
        by="system:test",
        rates=FixedRates({"USD": "2.00"}),
    )

    assert again.replayed and again.rate == first.rate and again.bought == first.bought
    assert wallet(alice.pk, "EUR") == 90_000
    with pytest.raises(Conflict):
        services.convert_wallet(
            alice.pk,
            from_currency="EUR",
            to_currency="USD",
            sell_amount=20_000,
            request_id="fx-2",
            by="system:test",
            rates=FixedRates({"USD": "1.05"}),
        )


@pytest.mark.django_db
def test_a_conversion_cannot_sell_more_than_the_cash(local_psp):
    alice = new_client(verified=True)
    funded(local_psp, alice, 1_000, "EUR")

    with pytest.raises(InsufficientFunds):
        services.convert_wallet(
            alice.pk,
            from_currency="EUR",
            to_currency="USD",
            sell_amount=1_001,
            request_id="fx-3",
            by="system:test",
            rates=FixedRates({"USD": "1.05"}),
        )
    assert wallet(alice.pk, "EUR") == 1_000
