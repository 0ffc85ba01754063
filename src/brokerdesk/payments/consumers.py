"""Payments' periodic jobs (run by the worker): the scheduled settlement reconciliation and
the daily import of the ECB reference rates."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from brokerdesk.core.periodic import periodic
from brokerdesk.payments.rates import fetch_ecb_if_due
from brokerdesk.payments.reconciliation import reconcile_directory


def settlement_inbox() -> Path:
    """Where settlement files are dropped: ``DATA_DIR/settlements/<provider>/*.csv``."""
    return Path(settings.DATA_DIR) / "settlements"


@periodic("payments.reconcile_settlements", every_s=3600)
def reconcile_settlements() -> int:
    """Reconcile every new settlement file of every provider; return how many were run."""
    root = settlement_inbox()
    if not root.is_dir():
        return 0
    runs = 0
    for provider_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        runs += len(reconcile_directory(provider_dir, provider=provider_dir.name))
    return runs


@periodic("payments.fetch_ecb_rates", every_s=3600)
def fetch_ecb_rates() -> int | None:
    """Import the ECB's daily reference rates once a day (failure-tolerant, retried hourly)."""
    return fetch_ecb_if_due()
