"""Event handlers and periodic jobs of bonuses (the worker imports this module).

* ``bonuses.payments`` (stream ``payments``): ``deposit.confirmed`` grants eligible deposit
  campaigns; ``deposit.reversed`` forfeits the bonuses that deposit earned (chargeback);
  ``withdrawal.requested`` forfeits locked credit bonuses (withdrawal before unlock).
* ``bonuses.trading`` (stream ``trading``): ``trading.deal_closed`` counts lots towards
  unlocks, rebates and cashback; ``trading.deal_corrected`` (a dealer changed or deleted a
  deal) moves the counted lots and releases by after - before, once per (deal, version);
  ``trading.account_opened`` records the client's accounts (and sends a waiting tradable
  credit to the new live account).
* ``bonuses.clients`` (stream ``clients``): a closed account (``client.updated`` with
  ``relationship_ended_at``) forfeits every active bonus.
* periodic ``bonuses.expire`` (every 60 s) and ``bonuses.sync_platform_credit`` (every 10 s).

Every handler is idempotent on its own (grant keys, per-bonus event keys), on top of the
runner's processed-event bookkeeping.
"""

from __future__ import annotations

import structlog

from brokerdesk.bonuses import services
from brokerdesk.bonuses.models import PlatformCreditOp
from brokerdesk.core.bus.base import Message
from brokerdesk.core.consumers import consumer
from brokerdesk.core.periodic import periodic

log = structlog.get_logger(__name__)


def handle_payment(m: Message) -> None:
    """One payments event."""
    p = m.payload
    if m.type == "deposit.confirmed":
        services.grant_for_deposit(
            client_id=p["client_id"],
            payment_id=str(p.get("payment_id") or p.get("reference")),
            amount=int(p["amount"]),
            currency=str(p["currency"]),
            method=str(p.get("provider") or p.get("method") or ""),
        )
    elif m.type == "deposit.reversed":
        services.forfeit_for_chargeback(
            client_id=p["client_id"],
            payment_id=str(p.get("payment_id") or p.get("reference")),
            reason=str(p.get("reason") or ""),
        )
    elif m.type == "withdrawal.requested":
        services.forfeit_for_withdrawal(
            client_id=p["client_id"],
            currency=str(p["currency"]),
            amount=int(p["amount"]),
            withdrawal_id=str(p.get("payment_id") or p.get("reference")),
        )


@consumer("bonuses.payments", streams=["payments"], batch_size=200)
def on_payments(messages: list[Message]) -> None:
    """Grants on deposits; forfeits on chargebacks and withdrawals."""
    for m in messages:
        handle_payment(m)


def deal_facts(m: Message) -> services.DealFacts | None:
    """The deal of one ``trading.deal_closed`` message, or ``None`` when no client owns it."""
    deals = services.deals_from_events([(m.payload, m.occurred_at)])
    return deals[0] if deals else None


def handle_trading(m: Message) -> None:
    """One trading event other than a closed deal."""
    p = m.payload
    if m.type == "trading.account_opened":
        services.record_account(
            server=str(p["server"]),
            login=int(p["login"]),
            client_id=p["client_id"],
            currency=str(p["currency"]),
            group=str(p.get("group") or ""),
            is_live=bool(p.get("is_live", True)),
        )


@consumer("bonuses.trading", streams=["trading"], batch_size=500)
def on_trading(messages: list[Message]) -> None:
    """Unlocks, rebates and cashback from closed (and corrected) deals; trading accounts."""
    deals = [(m.payload, m.occurred_at) for m in messages if m.type == "trading.deal_closed"]
    if deals:
        services.settle_deal_events(deals)
    corrections = [
        (m.payload, m.occurred_at) for m in messages if m.type == "trading.deal_corrected"
    ]
    if corrections:
        services.settle_correction_events(corrections)
    for m in messages:
        handle_trading(m)


def handle_client(m: Message) -> None:
    """One clients event: an ended relationship closes the client's bonuses."""
    if m.type == "client.updated" and "relationship_ended_at" in (m.payload.get("fields") or []):
        services.forfeit_for_closure(m.payload["client_id"])


@consumer("bonuses.clients", streams=["clients"], batch_size=200)
def on_clients(messages: list[Message]) -> None:
    """Account closure forfeits bonuses."""
    for m in messages:
        handle_client(m)


@periodic("bonuses.expire", every_s=60)
def expire() -> int:
    """Forfeit what is left of expired bonuses."""
    return services.expire_due()


@periodic("bonuses.sync_platform_credit", every_s=10)
def sync_platform_credit() -> int:
    """Send queued platform credit operations (tradable credit) to their servers."""
    if not PlatformCreditOp.objects.filter(state__in=["pending", "sent"]).exists():
        return 0
    from brokerdesk.trading.services import connected_port

    return services.sync_platform_credit(connected_port)
