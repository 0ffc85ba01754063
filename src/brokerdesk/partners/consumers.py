"""Event handlers of the partners module (the worker imports this module).

* ``partners.accrue_deals`` reads ``trading.deal_closed`` from the ``trading`` stream in
  batches and runs the accrual engine once per batch (idempotent per deal key).
* ``partners.correct_deals`` reads ``trading.deal_corrected`` from the same stream, apart
  from the accrual hot path, and rebooks the commission of corrected deals
  (``corrections.apply_corrections``, idempotent per deal and ``version_msc``).
* ``partners.record_funding`` reads ``deposit.confirmed`` from the ``payments`` stream and
  records a client's first deposit (funding locks attribution; CPA qualifies on it).
* periodic ``partners.release_holdbacks`` (every 10 minutes) moves holdbacks past their
  release date into accruals of their own.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from uuid import UUID

import structlog

from brokerdesk.core.bus.base import Message
from brokerdesk.core.consumers import consumer
from brokerdesk.core.errors import ValidationError
from brokerdesk.core.periodic import periodic
from brokerdesk.partners import accrual, attribution, corrections
from brokerdesk.partners.deals import DEAL_CLOSED, ClosedDeal, parse_deal_closed

log = structlog.get_logger(__name__)


def parse_batch(messages: list[Message], *, strict: bool = True) -> list[ClosedDeal]:
    """The closed deals of a batch (other event types are ignored).

    An unusable payload raises ``ValidationError`` (``strict``): the runner then retries the
    batch message by message and dead-letters that one, so it is seen rather than lost.
    """
    deals = []
    for m in messages:
        if m.type != DEAL_CLOSED:
            continue
        try:
            deals.append(parse_deal_closed(m.payload))
        except ValidationError as exc:
            log.warning("partners_deal_unusable", event_id=m.event_id, error=exc.message)
            if strict:
                raise
    return deals


def with_bonus_costs(deals: list[ClosedDeal], messages: list[Message]) -> list[ClosedDeal]:
    """The deals with the bonus money each one released, so revenue share is net of bonuses
    (``bonuses.services.settle_deal_events`` counts the deals towards bonuses first if its
    own consumer has not yet: the same cost in any order). A cost in the payload is kept."""
    from brokerdesk.bonuses.services import settle_deal_events

    closed = [(m.payload, m.occurred_at) for m in messages if m.type == DEAL_CLOSED]
    costs = settle_deal_events(closed)
    return [
        replace(d, bonus_cost=costs[d.key]) if not d.bonus_cost and costs.get(d.key) else d
        for d in deals
    ]


# Up to 100,000 closed deals a batch: the engine's per-batch work (the ledger transfer — one
# leg per IB that earned —, the look-ups of uplines and plans, the read-model upserts, the
# commit) is shared by more deals under load (with 50,000 IBs earning: 0.5 ledger legs per
# deal, against 0.9 at 50,000 and 1.6 at 20,000); a quiet stream still gets small batches at
# once (the runner does not wait to fill one).
ACCRUAL_BATCH_SIZE = 100_000


@consumer("partners.accrue_deals", streams=["trading"], batch_size=ACCRUAL_BATCH_SIZE)
def on_deals_closed(messages: list[Message]) -> None:
    """Accrue commission on a batch of closed deals."""
    deals = parse_batch(messages)
    if deals:
        accrual.accrue_deals(with_bonus_costs(deals, messages))


# A consumer of its own (rare messages), so deal_closed processing never waits for corrections.
# Its writes are keyed (one DealCorrection per deal and version), so it skips the runner's
# processed-id rows, which would otherwise cost a write per deal_closed it merely passes over.
@consumer("partners.correct_deals", streams=["trading"], batch_size=5000, keyed_writes=True)
def on_deals_corrected(messages: list[Message]) -> None:
    """Rebook the commission of deals a dealer updated or deleted."""
    payloads = [m.payload for m in messages if m.type == corrections.DEAL_CORRECTED]
    if payloads:
        corrections.apply_corrections(payloads)


@consumer("partners.record_funding", streams=["payments"], batch_size=200)
def on_deposit_confirmed(messages: list[Message]) -> None:
    """Record first deposits (``deposit.confirmed``: client_id, amount, currency)."""
    for m in messages:
        if m.type != "deposit.confirmed":
            continue
        p = m.payload
        try:
            amount = int(p["amount"])
            at = datetime.fromisoformat(str(p.get("confirmed_at") or m.occurred_at))
            first = attribution.record_funding(
                p["client_id"],
                amount=amount,
                currency=str(p["currency"]),
                reference=str(p.get("deposit_id") or p.get("intent_id") or m.event_id),
                at=at,
            )
        except (KeyError, TypeError, ValueError, ValidationError) as exc:
            log.warning("partners_deposit_unusable", event_id=m.event_id, error=str(exc))
            continue
        if first:
            accrual.evaluate_cpa([UUID(str(p["client_id"]))])


@periodic("partners.release_holdbacks", every_s=600)
def release_holdbacks() -> int:
    """Holdbacks past their release date become accruals of their own (to approve and pay)."""
    return accrual.release_holdbacks()
