"""Projectors of reporting (the worker imports this module).

One consumer per source stream keeps the rollups: ``reporting.payments`` (deposits,
withdrawals), ``reporting.trading`` (accounts opened, closed deals), ``reporting.partners``
(commission accrued) and ``reporting.compliance`` (AML alerts). Their writes are keyed
(``AppliedFact``: one key per fact), so the runner's processed-id rows are not needed: a
redelivered event adds nothing.
"""

from __future__ import annotations

from brokerdesk.core.bus.base import Message
from brokerdesk.core.consumers import consumer
from brokerdesk.reporting import services


@consumer("reporting.payments", streams=["payments"], batch_size=500, keyed_writes=True)
def project_payments(messages: list[Message]) -> None:
    """Deposits and withdrawals into the account-day, IB-day and payment-day rollups."""
    services.apply_messages(messages)


@consumer(
    "reporting.trading", streams=["trading"], batch_size=2000, max_wait_ms=500, keyed_writes=True
)
def project_trading(messages: list[Message]) -> None:
    """Closed deals (volume, P/L, deal count) into the account-day and IB-day rollups."""
    services.apply_messages(messages)


@consumer("reporting.partners", streams=["partners"], batch_size=1000, keyed_writes=True)
def project_partners(messages: list[Message]) -> None:
    """Commissions accrued into the earning IB's rows."""
    services.apply_messages(messages)


@consumer("reporting.compliance", streams=["compliance"], batch_size=500, keyed_writes=True)
def project_compliance(messages: list[Message]) -> None:
    """AML alerts into the AML rollup."""
    services.apply_messages(messages)
