"""The ledger reacts to no other module's events; it runs two periodic jobs in the worker."""

from __future__ import annotations

from brokerdesk.core.partitions import ensure_monthly_partitions
from brokerdesk.core.periodic import periodic
from brokerdesk.ledger.services import expire_pending_transfers


@periodic("ledger.expire_pending", every_s=5)
def expire_pending() -> int:
    """Release pending transfers whose timeout has passed."""
    return expire_pending_transfers()


@periodic("ledger.partitions", every_s=3600)
def create_partitions() -> list[str]:
    """Keep monthly entry partitions three months ahead (PostgreSQL)."""
    return ensure_monthly_partitions("ledger_entry", months_ahead=3)
