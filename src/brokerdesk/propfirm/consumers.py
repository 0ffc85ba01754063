"""Event handlers and periodic jobs of propfirm (the worker imports this module).

* ``propfirm.evaluate_deals`` reads ``trading.deal_closed`` from the ``trading`` stream: the
  closing deals of challenge logins are stored once per ticket and their accounts evaluated
  (profit target, trading days, consistency; the loss rules with the day's readings).
* ``propfirm.poll_equity`` (every 5 s) reads the platform's equity of active challenge
  accounts (``UserAccountRequest`` through ``trading.services.refresh_account_state``), the
  stalest first, and evaluates them: the loss limits are checked on these readings.
* ``propfirm.deadlines`` (every 60 s) fails phases whose time limit ran out.
* ``propfirm.platform`` (every 5 s) opens pending phase accounts, retries telling the platform
  about decisions (trading disabled, next phase opened) and finishes interrupted payouts.
"""

from __future__ import annotations

import structlog

from brokerdesk.core.bus.base import Message
from brokerdesk.core.consumers import consumer
from brokerdesk.core.periodic import periodic
from brokerdesk.propfirm import services

log = structlog.get_logger(__name__)

DEAL_CLOSED = "trading.deal_closed"
_REQUIRED = ("server", "login", "deal", "time_msc")


def closed_deals(messages: list[Message]) -> list[dict[str, object]]:
    """The usable ``trading.deal_closed`` payloads of a batch (others are skipped)."""
    deals = []
    for m in messages:
        if m.type != DEAL_CLOSED:
            continue
        if any(key not in m.payload for key in _REQUIRED):
            log.warning("propfirm_deal_unusable", event_id=m.event_id)
            continue
        deals.append(dict(m.payload))
    return deals


@consumer("propfirm.evaluate_deals", streams=["trading"], batch_size=500)
def on_deals_closed(messages: list[Message]) -> None:
    """Store challenge logins' closed deals (once per ticket) and evaluate their accounts."""
    deals = closed_deals(messages)
    if deals:
        services.record_closed_deals(deals)


@periodic("propfirm.poll_equity", every_s=5)
def poll_equity() -> int:
    """Equity readings of the active challenge accounts."""
    return services.poll_equity()


@periodic("propfirm.deadlines", every_s=60)
def deadlines() -> int:
    """Phases whose time limit has run out."""
    return services.expire_deadlines()


@periodic("propfirm.platform", every_s=5)
def platform() -> int:
    """Open pending accounts, enforce decisions on the platform, finish payouts."""
    return services.open_pending_accounts() + services.enforce_pending() + services.resume_payouts()
