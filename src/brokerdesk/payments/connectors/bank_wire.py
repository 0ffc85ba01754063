"""Bank wire: no API and no webhooks. A deposit intent is a reference the client puts in the
wire's remittance text; finance imports the bank statement and each line is matched to its
deposit or withdrawal by that reference (``services.import_bank_statement``). Payouts are
instructions finance executes in the bank; the statement's debit line marks them paid."""

from __future__ import annotations

from collections.abc import Mapping

from brokerdesk.payments.connectors.base import (
    InvalidSignature,
    NormalizedEvent,
    ProviderPayment,
)


class BankWireConnector:
    """Manual bank transfers matched by reference."""

    provider = "bank"

    def __init__(self, *, beneficiary: str = "Brokerdesk client money account") -> None:
        self.beneficiary = beneficiary

    def create_deposit(
        self, *, reference: str, amount: int, currency: str, metadata: Mapping[str, str]
    ) -> ProviderPayment:
        """Nothing to call: the reference is the instruction (quote it in the remittance)."""
        return ProviderPayment(self.provider, reference, "pending")

    def create_payout(
        self, *, reference: str, amount: int, currency: str, destination: str
    ) -> ProviderPayment:
        """A payout instruction for finance to execute (quoting ``reference``)."""
        return ProviderPayment(self.provider, f"wire:{reference}", "pending")

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> NormalizedEvent:
        """Bank wires have no webhooks: import the statement instead."""
        raise InvalidSignature(
            "Bank wires have no webhooks; import the bank statement.",
            code="no_webhooks",
            field="provider",
        )
