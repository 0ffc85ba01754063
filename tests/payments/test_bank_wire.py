"""Bank wires: no webhooks; the bank statement is matched to deposits and payouts by reference."""

from __future__ import annotations

import pytest

from brokerdesk.core.errors import ValidationError
from brokerdesk.ledger import queries as ledger_queries
from brokerdesk.ledger import services as ledger
from brokerdesk.payments import connectors, queries, services
from brokerdesk.payments.connectors.base import InvalidSignature
from brokerdesk.payments.models import Deposit, ReconciliationException
from tests.payments.conftest import new_client, wallet

pytestmark = pytest.mark.django_db

HEADER = "transaction_id,booked_at,amount,currency,remittance\n"


def bank_balance() -> int:
    return ledger_queries.balance(ledger.system_account("bank", "EUR").id).posted


def test_a_wire_quoting_the_reference_confirms_the_deposit_once():
    alice = new_client(verified=True)
    deposit = services.create_deposit_intent(
        alice.pk,
        amount=250_000,
        currency="EUR",
        request_id="b-1",
        by="system:test",
        provider="bank",
        method_token="CY17002001280000001200527600",
    )
    assert deposit.status == "pending" and deposit.provider_id == deposit.reference
    statement = HEADER + f"TX-1,2026-11-26,250000,EUR,DEPOSIT {deposit.reference} N PAYER\n"

    first = services.import_bank_statement(statement)
    again = services.import_bank_statement(statement)

    assert first == [("TX-1", "confirmed")] and again == [("TX-1", "duplicate")]
    assert wallet(alice.pk, "EUR") == 250_000 and bank_balance() == -250_000


def test_a_wire_without_a_known_reference_goes_to_the_exceptions_queue():
    outcomes = services.import_bank_statement(HEADER + "TX-9,2026-11-26,5000,EUR,salary\n")

    assert outcomes == [("TX-9", "unmatched")]
    assert ReconciliationException.objects.get().kind == "unmatched_webhook"
    assert bank_balance() == 0


def test_a_wire_payout_is_paid_when_the_debit_line_appears():
    alice = new_client(verified=True)
    deposit = services.create_deposit_intent(
        alice.pk,
        amount=250_000,
        currency="EUR",
        request_id="b-2",
        by="system:test",
        provider="bank",
        method_token="CY17002001280000001200527600",
    )
    services.import_bank_statement(HEADER + f"TX-1,2026-11-26,250000,EUR,{deposit.reference}\n")
    method_id = Deposit.objects.get(pk=deposit.id).method_id
    sent = services.send_payout(
        services.request_withdrawal(
            alice.pk,
            amount=50_000,
            currency="EUR",
            method_id=method_id,
            request_id="bw-1",
            by="system:test",
        ).id
    )
    assert sent.provider_id == f"wire:{sent.reference}"

    outcomes = services.import_bank_statement(
        HEADER + f"TX-2,2026-11-27,-50000,EUR,PAYOUT {sent.reference}\n"
    )

    assert outcomes == [("TX-2", "paid")]
    assert queries.get_withdrawal(sent.id).status == "paid"
    assert (wallet(alice.pk, "EUR"), bank_balance()) == (200_000, -200_000)


def test_a_statement_without_the_needed_columns_or_with_a_bad_amount_is_refused():
    with pytest.raises(ValidationError) as columns:
        services.import_bank_statement("id,amount\n1,2\n")
    assert columns.value.code == "bad_statement_file"
    with pytest.raises(ValidationError) as amount:
        services.import_bank_statement(HEADER + "TX-1,2026-11-26,12.50,EUR,x\n")
    assert amount.value.code == "not_integer" and "Line 2" in amount.value.message


def test_bank_wires_have_no_webhooks():
    with pytest.raises(InvalidSignature) as error:
        connectors.get("bank").parse_webhook(b"{}", {})
    assert error.value.code == "no_webhooks"
