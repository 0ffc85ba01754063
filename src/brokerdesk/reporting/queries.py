"""Read side of reporting: the reports, each read from the rollups only (never live tables).

Every report is a :class:`Report` (columns and rows) that the pages render, the API returns
and the exports write. Money stays integer minor units here; columns say how to show them.
Dates are inclusive: ``start`` and ``end`` are both reported. ``ib_ids`` narrows a report to
some IBs (an IB's subtree, for partner-facing use); ``None`` means every IB.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum
from django.utils.translation import gettext_lazy as _

from brokerdesk.core.errors import ValidationError
from brokerdesk.reporting.models import NO_IB, AccountDay, AmlDay, IBDay, PaymentDay

MAX_RANGE_DAYS = 366
VOLUME_PER_LOT = 10_000  # MT5 volume units per lot


@dataclass(frozen=True)
class Column:
    """One report column: its key in the rows, its label, and how to show its values."""

    key: str
    label: Any  # lazy translation
    kind: str = "text"  # text | money | count | lots | date | percent


@dataclass
class Report:
    """A report: what it is, over which dates, its columns and rows (money in minor units)."""

    slug: str
    title: Any
    start: date
    end: date
    columns: list[Column]
    rows: list[dict[str, Any]] = field(default_factory=list)


def check_range(start: date, end: date) -> None:
    """Refuse a reversed or over-long date range, naming the field."""
    if end < start:
        raise ValidationError(
            "The end date must be on or after the start date.", code="bad_range", field="end"
        )
    if (end - start).days >= MAX_RANGE_DAYS:
        raise ValidationError(
            f"A report covers at most {MAX_RANGE_DAYS} days.", code="range_too_long", field="end"
        )


IB_NAME_TTL_S = 300.0
_ib_name_cache: dict[str, tuple[float, str]] = {}


def _ib_names(ib_ids: Sequence[str]) -> dict[str, str]:
    """Display names of IBs ("name (code)") from the partners module, cached for 5 minutes.

    IB names change rarely and a report may list hundreds of IBs: each is asked of the
    partners module once per ``IB_NAME_TTL_S`` per process.
    """
    from brokerdesk.core.errors import NotFound
    from brokerdesk.partners.hierarchy import get_ib

    now = time.monotonic()
    names: dict[str, str] = {}
    for ib_id in set(ib_ids):
        if ib_id == NO_IB:
            names[ib_id] = str(_("No IB (direct clients)"))
            continue
        cached = _ib_name_cache.get(ib_id)
        if cached is not None and now - cached[0] < IB_NAME_TTL_S:
            names[ib_id] = cached[1]
            continue
        try:
            ib = get_ib(ib_id)
        except (NotFound, ValueError):
            names[ib_id] = ib_id
            continue
        names[ib_id] = f"{ib.name} ({ib.code})"
        _ib_name_cache[ib_id] = (now, names[ib_id])
    return names


def subtree_of(ib_id: str) -> list[str]:
    """The IB and every IB below it (for narrowing a report to one IB's network)."""
    from brokerdesk.partners.hierarchy import subtree_ids

    return [str(i) for i in subtree_ids(ib_id)]


def _scoped(qs: QuerySet[Any], ib_ids: Sequence[str] | None) -> QuerySet[Any]:
    return qs if ib_ids is None else qs.filter(ib_id__in=list(ib_ids))


_SUMS = {
    name: Sum(name)
    for name in (
        "deposits",
        "deposit_count",
        "withdrawals",
        "withdrawal_count",
        "volume",
        "deals",
        "profit",
        "charges",
        "ib_commission",
    )
}


# ---------------------------------------------------------------------------- reports


def ib_daily(start: date, end: date, *, ib_ids: Sequence[str] | None = None) -> Report:
    """Deposits and volume by IB by day (reads ``IBDay``: index on day, or on IB and day)."""
    check_range(start, end)
    qs = _scoped(IBDay.objects.filter(day__gte=start, day__lte=end), ib_ids)
    rows = list(
        qs.order_by("day", "ib_id", "currency").values(
            "day",
            "ib_id",
            "currency",
            "deposits",
            "deposit_count",
            "withdrawals",
            "volume",
            "deals",
            "ib_commission",
        )
    )
    names = _ib_names([r["ib_id"] for r in rows])
    for r in rows:
        r["ib"] = names[r["ib_id"]]
        r["net_deposits"] = r["deposits"] - r["withdrawals"]
    return Report(
        "ib-daily",
        _("Deposits and volume by IB by day"),
        start,
        end,
        [
            Column("day", _("Day"), "date"),
            Column("ib", _("IB")),
            Column("currency", _("Currency")),
            Column("deposits", _("Deposits"), "money"),
            Column("deposit_count", _("Deposit count"), "count"),
            Column("withdrawals", _("Withdrawals"), "money"),
            Column("net_deposits", _("Net deposits"), "money"),
            Column("volume", _("Volume (lots)"), "lots"),
            Column("deals", _("Deals"), "count"),
            Column("ib_commission", _("IB commission"), "money"),
        ],
        rows,
    )


def client_profitability(
    start: date, end: date, *, ib_ids: Sequence[str] | None = None, limit: int = 200
) -> Report:
    """Clients' trading result and funding over the period, most profitable clients first."""
    check_range(start, end)
    qs = _scoped(AccountDay.objects.filter(day__gte=start, day__lte=end), ib_ids).exclude(
        client_id=""
    )
    grouped = qs.values("client_id", "currency").annotate(**_SUMS)
    rows = []
    for r in grouped:
        r["net_pl"] = (r["profit"] or 0) + (r["charges"] or 0)
        r["net_deposits"] = (r["deposits"] or 0) - (r["withdrawals"] or 0)
        rows.append(r)
    rows.sort(key=lambda r: (-r["net_pl"], r["client_id"], r["currency"]))
    rows = rows[:limit]
    _add_client_labels(rows)
    return Report(
        "client-profitability",
        _("Client profitability"),
        start,
        end,
        [
            Column("client", _("Client")),
            Column("currency", _("Currency")),
            Column("deals", _("Deals"), "count"),
            Column("volume", _("Volume (lots)"), "lots"),
            Column("profit", _("Trading profit"), "money"),
            Column("charges", _("Commission, swap and fees"), "money"),
            Column("net_pl", _("Client net P/L"), "money"),
            Column("deposits", _("Deposits"), "money"),
            Column("withdrawals", _("Withdrawals"), "money"),
            Column("net_deposits", _("Net deposits"), "money"),
        ],
        rows,
    )


def _add_client_labels(rows: list[dict[str, Any]]) -> None:
    from brokerdesk.clients.queries import get_client
    from brokerdesk.core.errors import NotFound

    labels: dict[str, str] = {}
    for r in rows:
        client_id = r["client_id"]
        if client_id not in labels:
            try:
                labels[client_id] = get_client(client_id).display_name
            except (NotFound, ValueError, ValidationError):
                labels[client_id] = client_id
        r["client"] = labels[client_id]


def ib_performance(start: date, end: date, *, ib_ids: Sequence[str] | None = None) -> Report:
    """Per IB: funding, volume, clients' P/L, commission earned and active clients."""
    check_range(start, end)
    qs = _scoped(IBDay.objects.filter(day__gte=start, day__lte=end), ib_ids)
    rows = list(qs.values("ib_id", "currency").annotate(**_SUMS).order_by("ib_id", "currency"))
    active = {
        (r["ib_id"], r["currency"]): r["clients"]
        for r in _scoped(AccountDay.objects.filter(day__gte=start, day__lte=end), ib_ids)
        .filter(Q(deals__gt=0) | Q(deposit_count__gt=0))
        .exclude(client_id="")
        .values("ib_id", "currency")
        .annotate(clients=Count("client_id", distinct=True))
    }
    names = _ib_names([r["ib_id"] for r in rows])
    for r in rows:
        r["ib"] = names[r["ib_id"]]
        r["net_deposits"] = r["deposits"] - r["withdrawals"]
        r["client_pl"] = r["profit"] + r["charges"]
        r["active_clients"] = active.get((r["ib_id"], r["currency"]), 0)
    rows.sort(key=lambda r: (-r["volume"], r["ib"]))
    return Report(
        "ib-performance",
        _("IB performance"),
        start,
        end,
        [
            Column("ib", _("IB")),
            Column("currency", _("Currency")),
            Column("active_clients", _("Active clients"), "count"),
            Column("deposits", _("Deposits"), "money"),
            Column("net_deposits", _("Net deposits"), "money"),
            Column("volume", _("Volume (lots)"), "lots"),
            Column("deals", _("Deals"), "count"),
            Column("client_pl", _("Clients' net P/L"), "money"),
            Column("ib_commission", _("Commission earned"), "money"),
        ],
        rows,
    )


def percent(part: int, whole: int) -> str:
    """``part`` of ``whole`` in percent with two decimals, exact ("" when ``whole`` is 0)."""
    if not whole:
        return ""
    return str((Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.01")))


PAYMENT_KINDS = ("deposit", "deposit_reversed", "withdrawal_paid", "withdrawal_returned")


def payment_methods(start: date, end: date) -> Report:
    """Per provider and currency: deposits, reversals, payouts and returns (count, amount)."""
    check_range(start, end)
    grouped = (
        PaymentDay.objects.filter(day__gte=start, day__lte=end)
        .values("provider", "currency", "kind")
        .annotate(n=Sum("count"), total=Sum("amount"))
    )
    table: dict[tuple[str, str], dict[str, Any]] = {}
    for r in grouped:
        row = table.setdefault(
            (r["provider"], r["currency"]),
            {"provider": r["provider"], "currency": r["currency"]}
            | {f"{k}_{m}": 0 for k in PAYMENT_KINDS for m in ("count", "amount")},
        )
        row[f"{r['kind']}_count"] += r["n"] or 0
        row[f"{r['kind']}_amount"] += r["total"] or 0
    rows = [table[k] for k in sorted(table)]
    for row in rows:
        deposits = row["deposit_count"]
        row["reversal_rate"] = percent(row["deposit_reversed_count"], deposits)
    return Report(
        "payment-methods",
        _("Payment-method performance"),
        start,
        end,
        [
            Column("provider", _("Provider")),
            Column("currency", _("Currency")),
            Column("deposit_count", _("Deposits"), "count"),
            Column("deposit_amount", _("Deposited"), "money"),
            Column("deposit_reversed_count", _("Reversals"), "count"),
            Column("deposit_reversed_amount", _("Reversed"), "money"),
            Column("reversal_rate", _("Reversal rate (%)"), "percent"),
            Column("withdrawal_paid_count", _("Payouts"), "count"),
            Column("withdrawal_paid_amount", _("Paid out"), "money"),
            Column("withdrawal_returned_count", _("Returned payouts"), "count"),
            Column("withdrawal_returned_amount", _("Returned"), "money"),
        ],
        rows,
    )


def aml_statistics(start: date, end: date) -> Report:
    """AML alerts per rule and severity over the period, with the share of each rule."""
    check_range(start, end)
    grouped = list(
        AmlDay.objects.filter(day__gte=start, day__lte=end)
        .values("rule", "severity")
        .annotate(alerts=Sum("alerts"), days=Count("day", distinct=True))
        .order_by("rule", "severity")
    )
    total = sum(r["alerts"] or 0 for r in grouped)
    for r in grouped:
        r["share"] = percent(r["alerts"] or 0, total)
    return Report(
        "aml-statistics",
        _("AML statistics"),
        start,
        end,
        [
            Column("rule", _("Rule")),
            Column("severity", _("Severity")),
            Column("alerts", _("Alerts"), "count"),
            Column("days", _("Days with alerts"), "count"),
            Column("share", _("Share of alerts (%)"), "percent"),
        ],
        grouped,
    )


def open_aml_cases() -> int:
    """AML investigator cases not closed yet (from the compliance module)."""
    from brokerdesk.compliance.queries import cases

    return sum(
        1 for c in cases(limit=10_000) if c.kind == "aml" and c.status in {"open", "investigating"}
    )


REPORTS: dict[str, Callable[..., Report]] = {
    "ib-daily": ib_daily,
    "client-profitability": client_profitability,
    "ib-performance": ib_performance,
    "payment-methods": payment_methods,
    "aml-statistics": aml_statistics,
}
#: Reports about IBs, which partner managers may also see.
IB_REPORTS = frozenset({"ib-daily", "ib-performance"})


# ---------------------------------------------------------------------------- totals


def totals(start: date, end: date, *, ib_ids: Sequence[str] | None = None) -> dict[str, Any]:
    """Sums of every figure per currency over the period (reconciliation and tests)."""
    qs = _scoped(IBDay.objects.filter(day__gte=start, day__lte=end), ib_ids)
    return {r.pop("currency"): r for r in qs.values("currency").annotate(**_SUMS)}
