"""Reconciliation of the ledger's platform-clearing entries with the platform's balance deals.

Ledger side: the posted movements of ``platform_clearing`` (qualified by the server) in the
period, from the ledger's statement; each carries its idempotency key
``trading.transfer:<id>:post`` (or ``…:post-late``), hence the transfer id and the comment the
platform deal must carry (:func:`~brokerdesk.trading.platform.port.transfer_comment`). A credit
of the clearing account is a deposit onto the platform (+), a debit a withdrawal (-).

Platform side: the ``DEAL_BALANCE`` deals of every trading account of the server in that
currency, from the platform itself (``DealRequest(login, from, to)``).

Both sides are summed by comment; every comment whose sums differ is an exception:
``missing_on_platform``, ``missing_in_ledger`` or ``amount_mismatch``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction

from brokerdesk.core import clock
from brokerdesk.ledger import queries as ledger_queries
from brokerdesk.ledger import services as ledger
from brokerdesk.trading.models import (
    ReconciliationException,
    ReconciliationRun,
    TradingAccount,
)
from brokerdesk.trading.platform.port import (
    DealAction,
    PlatformPort,
    datetime_to_msc,
    transfer_comment,
)
from brokerdesk.trading.transfers import transfer_id_from_key


@dataclass
class _Side:
    amount: int = 0
    references: list[str] = field(default_factory=list)
    tickets: list[int] = field(default_factory=list)
    login: int | None = None


def ledger_side(server: str, currency: str, start: datetime, end: datetime) -> dict[str, _Side]:
    """Signed clearing movements in [start, end) by platform comment."""
    account = ledger.system_account("platform_clearing", currency, qualifier=server)
    statement = ledger_queries.statement(account.id, start, end)
    sides: dict[str, _Side] = defaultdict(_Side)
    for line in statement.lines:
        tid = transfer_id_from_key(line.reference)
        comment = transfer_comment(tid) if tid is not None else f"?{line.reference}"[:64]
        side = sides[comment]
        side.amount += line.credit - line.debit
        side.references.append(line.reference)
    return sides


def platform_side(
    port: PlatformPort, currency: str, start: datetime, end: datetime
) -> dict[str, _Side]:
    """Balance deals of the server's trading accounts in [start, end) by comment."""
    sides: dict[str, _Side] = defaultdict(_Side)
    logins = TradingAccount.objects.filter(server=port.server_name, currency=currency)
    start_msc, end_msc = datetime_to_msc(start), datetime_to_msc(end) - 1
    for login in logins.order_by("login").values_list("login", flat=True):
        for deal in port.deals(login, start_msc, end_msc):
            if deal.action != DealAction.DEAL_BALANCE:
                continue
            side = sides[deal.comment]
            side.amount += deal.profit
            side.tickets.append(deal.deal)
            side.login = login
    return sides


def reconcile_platform_clearing(
    port: PlatformPort, *, currency: str, start: datetime, end: datetime
) -> ReconciliationRun:
    """Compare both sides for ``port``'s server; record the run and one row per mismatch."""
    server = port.server_name
    books = ledger_side(server, currency, start, end)
    platform = platform_side(port, currency, start, end)
    now = clock.now()
    items: list[ReconciliationException] = []
    matched = 0
    for comment in sorted(set(books) | set(platform)):
        ours, theirs = books.get(comment), platform.get(comment)
        if ours is not None and theirs is not None and ours.amount == theirs.amount:
            matched += 1
            continue
        if theirs is None:
            kind = ReconciliationException.Kind.MISSING_ON_PLATFORM
        elif ours is None:
            kind = ReconciliationException.Kind.MISSING_IN_LEDGER
        else:
            kind = ReconciliationException.Kind.AMOUNT_MISMATCH
        items.append(
            ReconciliationException(
                kind=kind,
                comment=comment,
                ledger_amount=ours.amount if ours else None,
                platform_amount=theirs.amount if theirs else None,
                ledger_reference=",".join(ours.references)[:200] if ours else "",
                platform_ticket=theirs.tickets[-1] if theirs and theirs.tickets else None,
                login=theirs.login if theirs else None,
                created_at=now,
            )
        )
    with transaction.atomic():
        run = ReconciliationRun.objects.create(
            server=server,
            currency=currency,
            period_start=start,
            period_end=end,
            ledger_count=len(books),
            platform_count=len(platform),
            matched=matched,
            exceptions=len(items),
            created_at=now,
        )
        for item in items:
            item.run = run
        ReconciliationException.objects.bulk_create(items)
    return run
