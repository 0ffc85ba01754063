"""Payments read side: deposits, withdrawals, timelines and the exceptions queue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from brokerdesk.core.errors import NotFound
from brokerdesk.core.money import get_currency
from brokerdesk.payments.models import Deposit, PaymentEvent, ReconciliationException, Withdrawal
from brokerdesk.payments.rates import RateProvider, fx_amounts
from brokerdesk.payments.rates import provider as rate_provider
from brokerdesk.payments.services import (
    DepositView,
    WithdrawalView,
    deposit_view,
    rules,
    withdrawal_view,
)


@dataclass(frozen=True)
class ConversionQuote:
    """What a conversion would give now: ``sell_amount`` of ``sell`` → ``net`` of ``buy``
    (minor units), at ``rate`` of ``rate_day`` less the FX fee."""

    sell: str
    buy: str
    sell_amount: int
    rate: Decimal
    rate_day: date | None
    gross: int
    fee: int
    fee_bps: int

    @property
    def net(self) -> int:
        """What reaches the bought side: gross less the FX fee."""
        return self.gross - self.fee


def conversion_quote(
    sell_amount: int, sell: str, buy: str, *, rates: RateProvider | None = None
) -> ConversionQuote:
    """The conversion the payments services would make now (the rates port in force, the
    ``fx_fee_bps`` rule, gross rounded down, fee rounded up), to show before a payment.

    Indicative only: a deposit converts at the rate of its confirmation, a withdrawal at the
    rate of its request. Raises ``NotFound`` (``no_rates``/``no_rate``) without a rate and
    ``ValidationError`` (``too_small``) when nothing would be left after the fee.
    """
    sell, buy = get_currency(sell).code, get_currency(buy).code
    quote = (rates or rate_provider()).rate(sell, buy)
    fee_bps = rules().fx_fee_bps
    gross, fee = fx_amounts(sell_amount, sell, buy, quote.rate, fee_bps)
    return ConversionQuote(sell, buy, sell_amount, quote.rate, quote.day, gross, fee, fee_bps)


@dataclass(frozen=True)
class TimelineStep:
    """One step of a payment's timeline."""

    from_status: str
    to_status: str
    actor: str
    reason: str
    data: dict[str, Any]
    occurred_at: datetime


@dataclass(frozen=True)
class ExceptionView:
    """One reconciliation exception."""

    id: UUID
    kind: str
    reference: str
    detail: str
    status: str
    resolution_note: str
    created_at: datetime


def get_deposit(deposit_id: UUID | str) -> DepositView:
    """A deposit, or ``NotFound``."""
    d = Deposit.objects.filter(pk=deposit_id).first()
    if d is None:
        raise NotFound("No such deposit.", code="deposit_not_found", field="deposit_id")
    return deposit_view(d)


def get_withdrawal(withdrawal_id: UUID | str) -> WithdrawalView:
    """A withdrawal, or ``NotFound``."""
    w = Withdrawal.objects.filter(pk=withdrawal_id).first()
    if w is None:
        raise NotFound("No such withdrawal.", code="withdrawal_not_found", field="withdrawal_id")
    return withdrawal_view(w)


def deposits_of(client_id: UUID | str, *, limit: int = 100) -> list[DepositView]:
    """A client's deposits, newest first."""
    rows = Deposit.objects.filter(client_id=client_id).order_by("-created_at")[:limit]
    return [deposit_view(d) for d in rows]


def withdrawals_of(client_id: UUID | str, *, limit: int = 100) -> list[WithdrawalView]:
    """A client's withdrawals, newest first."""
    rows = Withdrawal.objects.filter(client_id=client_id).order_by("-created_at")[:limit]
    return [withdrawal_view(w) for w in rows]


def timeline(payment_id: UUID | str) -> list[TimelineStep]:
    """Every step of a deposit's or withdrawal's timeline, oldest first."""
    return [
        TimelineStep(e.from_status, e.to_status, e.actor, e.reason, e.data, e.occurred_at)
        for e in PaymentEvent.objects.filter(payment_id=payment_id).order_by("occurred_at", "id")
    ]


def exceptions(*, status: str | None = None, limit: int = 100) -> list[ExceptionView]:
    """The exceptions queue (oldest first), optionally of one status."""
    rows = ReconciliationException.objects.order_by("created_at", "id")
    if status:
        rows = rows.filter(status=status)
    return [
        ExceptionView(
            r.id, r.kind, r.reference, r.detail, r.status, r.resolution_note, r.created_at
        )
        for r in rows[:limit]
    ]


# -- staff queues and daily figures (the back office reads these) --------------------------


def withdrawals_in_status(status: str, *, limit: int = 100) -> list[WithdrawalView]:
    """Withdrawals in ``status`` (e.g. ``pending_approval``), oldest first: a work queue."""
    rows = Withdrawal.objects.filter(status=status).order_by("created_at", "id")[:limit]
    return [withdrawal_view(w) for w in rows]


def count_in_status(kind: str, status: str) -> int:
    """How many deposits (``kind="deposit"``) or withdrawals are in ``status``."""
    model = Deposit if kind == "deposit" else Withdrawal
    return model.objects.filter(status=status).count()


@dataclass(frozen=True)
class DailyFlow:
    """Money in and out on one UTC day in one currency (minor units)."""

    day: Any  # datetime.date
    currency: str
    deposits: int
    withdrawals: int

    @property
    def net(self) -> int:
        """Deposits minus withdrawals."""
        return self.deposits - self.withdrawals


def daily_flows(start: datetime, end: datetime) -> list[DailyFlow]:
    """Confirmed deposits and paid (or sent) withdrawals per day and currency in [start, end)."""
    from collections import defaultdict

    from django.db.models import Sum
    from django.db.models.functions import TruncDate

    totals: dict[tuple[Any, str], list[int]] = defaultdict(lambda: [0, 0])
    deposits = (
        Deposit.objects.filter(
            status__in=("confirmed", "held"), confirmed_at__gte=start, confirmed_at__lt=end
        )
        .annotate(day=TruncDate("confirmed_at"))
        .values("day", "currency")
        .annotate(total=Sum("amount"))
    )
    for row in deposits:
        totals[(row["day"], row["currency"])][0] += int(row["total"] or 0)
    withdrawals = (
        Withdrawal.objects.filter(
            status__in=("approved", "sent", "paid"), updated_at__gte=start, updated_at__lt=end
        )
        .annotate(day=TruncDate("updated_at"))
        .values("day", "currency")
        .annotate(total=Sum("amount"))
    )
    for row in withdrawals:
        totals[(row["day"], row["currency"])][1] += int(row["total"] or 0)
    return [
        DailyFlow(day, currency, dep, wd)
        for (day, currency), (dep, wd) in sorted(totals.items(), key=lambda kv: kv[0])
    ]


# -- the client portal ----------------------------------------------------------------------


@dataclass(frozen=True)
class MethodView:
    """A payment method a client may withdraw to (return to source)."""

    id: UUID
    provider: str
    kind: str
    label: str
    currencies: tuple[str, ...]


def withdrawal_methods(client_id: UUID | str) -> list[MethodView]:
    """The client's methods with the currencies deposited through each (return to source)."""
    from brokerdesk.payments.models import PaymentMethod

    deposited: dict[UUID, set[str]] = {}
    for method_id, currency in Deposit.objects.filter(
        client_id=client_id, method__isnull=False, status__in=("confirmed", "held")
    ).values_list("method_id", "currency"):
        deposited.setdefault(method_id, set()).add(currency)
    methods = PaymentMethod.objects.filter(pk__in=deposited).order_by("created_at", "id")
    return [
        MethodView(
            m.pk,
            m.provider,
            m.kind,
            f"{m.kind} ···{m.token[-4:]}" if len(m.token) >= 4 else m.kind,
            tuple(sorted(deposited[m.pk])),
        )
        for m in methods
    ]


def open_exception_count() -> int:
    """How many reconciliation exceptions are not resolved yet."""
    return ReconciliationException.objects.exclude(status="resolved").count()
