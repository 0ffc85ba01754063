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


# -- the exceptions queue (the back office reads and resolves through these) ---------------


@dataclass(frozen=True)
class ExceptionRow:
    """A platform-reconciliation mismatch as the staff queue shows it."""

    id: str
    server: str
    currency: str
    kind: str
    comment: str
    ledger_amount: int | None
    platform_amount: int | None
    ledger_reference: str
    platform_ticket: int | None
    login: int | None
    created_at: datetime
    resolved_at: datetime | None


def exceptions(*, unresolved_only: bool = True, limit: int = 100) -> list[ExceptionRow]:
    """Mismatches found by the platform reconciliation runs, oldest first."""
    qs = ReconciliationException.objects.select_related("run").order_by("created_at", "id")
    if unresolved_only:
        qs = qs.filter(resolved_at__isnull=True)
    return [_exception_row(e) for e in qs[:limit]]


def _exception_row(e: ReconciliationException) -> ExceptionRow:
    return ExceptionRow(
        str(e.pk),
        e.run.server,
        e.run.currency,
        e.kind,
        e.comment,
        e.ledger_amount,
        e.platform_amount,
        e.ledger_reference,
        e.platform_ticket,
        e.login,
        e.created_at,
        e.resolved_at,
    )


def resolve_exception(exception_id: str, *, by: object, note: str) -> ExceptionRow:
    """Mark a mismatch resolved (dealing or finance); the note is mandatory and audited."""
    from django.core.exceptions import ValidationError as DjangoValidationError

    from brokerdesk.core import audit
    from brokerdesk.core.errors import IllegalTransition, NotFound, ValidationError
    from brokerdesk.staff.roles import Role, actor_label, require_role

    if not isinstance(by, str):
        require_role(by, Role.DEALING, Role.FINANCE)  # type: ignore[arg-type]
    if not (note or "").strip():
        raise ValidationError(
            "Resolving an exception needs a resolution note.", code="note_required", field="note"
        )
    actor = actor_label(by)
    with transaction.atomic():
        try:
            row = (
                ReconciliationException.objects.select_for_update()
                .select_related("run")
                .filter(pk=exception_id)
                .first()
            )
        except (ValueError, DjangoValidationError):
            row = None
        if row is None:
            raise NotFound("No such exception.", code="exception_not_found", field="exception_id")
        if row.resolved_at is not None:
            raise IllegalTransition(
                "The exception is already resolved.", code="already_resolved", field="exception_id"
            )
        row.resolved_at = clock.now()
        row.save(update_fields=["resolved_at"])
        audit.record(
            actor=actor,
            action="trading.reconciliation_exception.resolved",
            object_type="trading_reconciliation_exception",
            object_id=str(row.pk),
            reason=note.strip(),
            before={"resolved": False},
            after={"resolved": True, "kind": row.kind, "comment": row.comment},
        )
    return _exception_row(row)


def open_exception_count() -> int:
    """How many platform-reconciliation mismatches are not resolved yet."""
    return ReconciliationException.objects.filter(resolved_at__isnull=True).count()
