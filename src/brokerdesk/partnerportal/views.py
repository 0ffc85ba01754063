"""IB portal pages: dashboard with charts, referral links and codes, the sub-IB tree, clients
with drill-down to their deals, and payouts.

Every view is wrapped in ``partner_page`` and passes ``request.ib_id`` as the ``viewer`` to the
partners queries, which refuse anything outside the IB's own subtree (``NotFound`` → 404).
Client data is privacy-limited by those queries (a label such as "Maria I.", never contact data).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from brokerdesk.core import clock
from brokerdesk.core.errors import DomainError
from brokerdesk.core.money import Money
from brokerdesk.ledger.queries import balances_of
from brokerdesk.partnerportal.access import partner_page
from brokerdesk.partners import queries
from brokerdesk.portal.formatting import (
    VOLUME_PER_LOT,
    format_count,
    format_lots,
    format_money,
)

PERIODS = {"7": 7, "30": 30, "90": 90}
DEFAULT_PERIOD = "30"
STATE_LABELS = {
    "accrued": _("Accrued"),
    "approved": _("Approved"),
    "payable": _("Payable"),
    "paid": _("Paid"),
    "cancelled": _("Cancelled"),
    "held": _("Held back"),  # holdbacks not yet released (``queries.earned_by_state``)
}


def _period(request: HttpRequest) -> tuple[str, date, date]:
    """(the chosen period key, first day, day after the last) — the last N days to today."""
    key = request.GET.get("days", DEFAULT_PERIOD)
    key = key if key in PERIODS else DEFAULT_PERIOD
    end = clock.now().date() + timedelta(days=1)
    return key, end - timedelta(days=PERIODS[key]), end


def _span(start: date, end: date) -> tuple[datetime, datetime]:
    begin = datetime.combine(start, time.min, tzinfo=UTC)
    return begin, datetime.combine(end, time.min, tzinfo=UTC)


def _payable(ib_id: UUID, currency: str) -> str:
    return format_money(queries.payable_total(ib_id, currency), currency)


def _chart_data(activity: list[queries.Activity], start: date, end: date) -> dict[str, Any]:
    """Daily volume (lots) and earnings (major units, as strings of exact decimals) for
    Chart.js; every day of the period is present."""
    days = [start + timedelta(days=n) for n in range((end - start).days)]
    volume: dict[date, int] = defaultdict(int)
    earned: dict[tuple[date, str], int] = defaultdict(int)
    currencies: set[str] = set()
    for row in activity:
        volume[row.day] += row.volume
        earned[(row.day, row.currency)] += row.earned
        currencies.add(row.currency)
    return {
        "labels": [d.isoformat() for d in days],
        "volume": [str(Decimal(volume[d]) / VOLUME_PER_LOT) for d in days],
        "earned": {
            c: [str(Money(earned[(d, c)], c).to_decimal()) for d in days]
            for c in sorted(currencies)
        },
    }


@partner_page
def dashboard(request: HttpRequest) -> HttpResponse:
    """Totals for the period (clients, volume, commissions, payable) with daily charts."""
    ib_id = request.ib_id  # type: ignore[attr-defined]
    key, start, end = _period(request)
    profile = queries.ib_profile(ib_id)
    activity = queries.activity(ib_id, viewer=ib_id, start=start, end=end - timedelta(days=1))
    since, until = _span(start, end)
    clients = queries.clients(ib_id, viewer=ib_id, start=since, end=until, include_subtree=True)
    totals_by_currency: dict[str, int] = defaultdict(int)
    for row in activity:
        totals_by_currency[row.currency] += row.earned
    volume = sum(row.volume for row in activity)
    deals = sum(row.deals for row in activity)
    own_clients = [c for c in clients if c.ib_id == ib_id]
    return render(
        request,
        "partnerportal/dashboard.html",
        {
            "profile": profile,
            "period": key,
            "periods": list(PERIODS),
            "clients_total": format_count(len(clients)),
            "clients_own": format_count(len(own_clients)),
            "clients_funded": format_count(sum(1 for c in clients if c.funded)),
            "volume": format_lots(volume),
            "deals": format_count(deals),
            "earned": [format_money(v, c) for c, v in sorted(totals_by_currency.items())]
            or [format_money(0, profile.currency)],
            "payable": _payable(ib_id, profile.currency),
            "chart": _chart_data(activity, start, end),
            "links": queries.links_of(ib_id)[:3],
            "base_url": request.build_absolute_uri("/").rstrip("/"),
        },
    )


@partner_page
def links(request: HttpRequest) -> HttpResponse:
    """Referral links and promo codes, each with a copy button."""
    ib_id = request.ib_id  # type: ignore[attr-defined]
    base = request.build_absolute_uri("/").rstrip("/")
    rows = [
        {
            "link": link,
            "url": f"{base}{reverse('portal:join', args=[link.code])}"
            if link.kind == "link"
            else "",
        }
        for link in queries.links_of(ib_id)
    ]
    return render(
        request,
        "partnerportal/links.html",
        {"profile": queries.ib_profile(ib_id), "rows": rows},
    )


def _tree_order(rows: list[queries.TreeRow], top: UUID) -> list[queries.TreeRow]:
    """Each IB right after its parent (depth-first), siblings by code."""
    children: dict[UUID | None, list[queries.TreeRow]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r.code):
        children[row.parent_id].append(row)
    ordered: list[queries.TreeRow] = []

    def walk(row: queries.TreeRow) -> None:
        ordered.append(row)
        for child in children.get(row.ib_id, []):
            walk(child)

    for row in rows:
        if row.ib_id == top:
            walk(row)
    return ordered


@partner_page
def tree(request: HttpRequest) -> HttpResponse:
    """The sub-IB tree with each IB's own production in the period."""
    ib_id = request.ib_id  # type: ignore[attr-defined]
    key, start, end = _period(request)
    rows = _tree_order(
        queries.sub_ib_tree(ib_id, viewer=ib_id, start=start, end=end - timedelta(days=1)), ib_id
    )
    return render(
        request,
        "partnerportal/tree.html",
        {
            "rows": [
                {"row": r, "volume": format_lots(r.volume), "deals": format_count(r.deals)}
                for r in rows
            ],
            "period": key,
            "periods": list(PERIODS),
        },
    )


@partner_page
def clients(request: HttpRequest) -> HttpResponse:
    """The clients of the IB (and of its sub-IBs), with volume and what the IB earned."""
    ib_id = request.ib_id  # type: ignore[attr-defined]
    key, start, end = _period(request)
    since, until = _span(start, end)
    profile = queries.ib_profile(ib_id)
    rows = queries.clients(ib_id, viewer=ib_id, start=since, end=until, include_subtree=True)
    return render(
        request,
        "partnerportal/clients.html",
        {
            "rows": [
                {
                    "row": r,
                    "volume": format_lots(r.volume),
                    "earned": format_money(r.earned, profile.currency),
                    "own": r.ib_id == ib_id,
                }
                for r in rows
            ],
            "period": key,
            "periods": list(PERIODS),
        },
    )


@partner_page
def client_deals(request: HttpRequest, client_id: UUID) -> HttpResponse:
    """Drill-down: one client's deals in the period and what each earned the IB (or why not)."""
    ib_id = request.ib_id  # type: ignore[attr-defined]
    key, start, end = _period(request)
    since, until = _span(start, end)
    try:
        found = queries.evidence(ib_id, start=since, end=until, client_id=client_id, viewer=ib_id)
    except DomainError:
        raise Http404 from None
    label = next(
        (
            c.label
            for c in queries.clients(
                ib_id, viewer=ib_id, start=since, end=until, include_subtree=True
            )
            if c.client_id == client_id
        ),
        "",
    )
    deals = []
    for d in found.deals:
        mine = [o for o in d.outcomes if not o.excluded_by and o.state != "cancelled"]
        excluded = [o for o in d.outcomes if o.excluded_by]
        deals.append(
            {
                "deal": d,
                "lots": format_lots(d.volume),
                "earned": ", ".join(format_money(o.amount, o.currency) for o in mine) or "—",
                "excluded": excluded[0].excluded_by if excluded and not mine else "",
                "note": d.note,
            }
        )
    other = [{"outcome": o, "amount": format_money(o.amount, o.currency)} for o in found.other]
    return render(
        request,
        "partnerportal/client_deals.html",
        {
            "label": label,
            "deals": deals,
            "other": other,
            "total_volume": format_lots(found.total_volume),
            "period": key,
            "periods": list(PERIODS),
            "client_id": client_id,
        },
    )


@partner_page
def payouts(request: HttpRequest) -> HttpResponse:
    """Commissions by state, what is payable now, the payouts made and the IB's wallet."""
    ib_id = request.ib_id  # type: ignore[attr-defined]
    profile = queries.ib_profile(ib_id)
    by_state = queries.earned_by_state(ib_id)
    states = [
        {"state": state, "label": STATE_LABELS.get(state, state), "amount": format_money(v, c)}
        for (state, c), v in sorted(by_state.items())
        if state in STATE_LABELS
    ]
    wallet = [
        {"currency": b.currency, "bucket": b.bucket, "amount": format_money(b.posted, b.currency)}
        for b in balances_of("ib", str(ib_id))
        if b.bucket == "cash"
    ]
    return render(
        request,
        "partnerportal/payouts.html",
        {
            "profile": profile,
            "states": states,
            "payable": _payable(ib_id, profile.currency),
            "payouts": [
                {"payout": p, "amount": format_money(p.amount, p.currency)}
                for p in queries.payouts_of(ib_id)
            ],
            "wallet": wallet,
        },
    )
