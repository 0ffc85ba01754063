"""Event handlers and periodic jobs of propfirm (the worker imports this module).

* ``propfirm.evaluate_deals`` reads ``trading.deal_closed`` from the ``trading`` stream: the
  closing deals of challenge logins are stored once per ticket and their accounts evaluated
  (profit target, trading days, consistency; the loss rules with the day's readings).
  ``trading.deal_corrected`` (a dealer changed or deleted a deal) rewrites the stored deal
  (newest version wins), re-evaluates the account, and flags for staff a correction that
  contradicts a decision already taken (nothing decided is undone automatically).
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
DEAL_CORRECTED = "trading.deal_corrected"
_REQUIRED = ("server", "login", "deal", "time_msc")
_REQUIRED_CORRECTION = ("server", "login", "deal", "version_msc", "change")


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


def corrected_deals(messages: list[Message]) -> list[dict[str, object]]:
    """The usable ``trading.deal_corrected`` payloads of a batch, in stream order."""
    corrections = []
    for m in messages:
        if m.type != DEAL_CORRECTED:
            continue
        if any(key not in m.payload for key in _REQUIRED_CORRECTION):
            log.warning("propfirm_correction_unusable", event_id=m.event_id)
            continue
        corrections.append(dict(m.payload))
    return corrections


@consumer("propfirm.evaluate_deals", streams=["trading"], batch_size=500)
def on_deals_closed(messages: list[Message]) -> None:
    """Store challenge logins' closed deals (once per ticket) and evaluate their accounts;
    then apply dealer corrections of their deals and re-evaluate."""
    deals = closed_deals(messages)
    if deals:
        services.record_closed_deals(deals)
    corrections = corrected_deals(messages)
    if corrections:
        services.record_deal_corrections(corrections)


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
