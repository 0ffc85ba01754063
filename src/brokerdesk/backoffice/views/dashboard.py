"""The back-office start page: charts of money and clients, queue sizes and consumer lag."""

from __future__ import annotations

from typing import NamedTuple

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext, gettext_noop

from brokerdesk.backoffice import read
from brokerdesk.backoffice.access import staff_page
from brokerdesk.staff.roles import Role, has_role, roles_of

ROLE_NAMES: dict[str, str] = {
    Role.ADMIN: gettext_noop("Administrator"),
    Role.COMPLIANCE_OFFICER: gettext_noop("Compliance officer"),
    Role.FINANCE: gettext_noop("Finance"),
    Role.SUPPORT: gettext_noop("Support"),
    Role.DEALING: gettext_noop("Dealing and risk"),
    Role.PARTNER_MANAGER: gettext_noop("Partner manager"),
    Role.AUDITOR: gettext_noop("Auditor (read-only)"),
}
DAY_CHOICES = (7, 14, 30, 90)


class RoleLabel(NamedTuple):
    """A role code and the name people read."""

    code: str
    label: str


@staff_page()
def dashboard(request: HttpRequest) -> HttpResponse:
    """Deposits, withdrawals and net by day, new clients, queue sizes and consumer lag."""
    try:
        days = int(request.GET.get("days", 14))
    except ValueError:
        days = 14
    days = days if days in DAY_CHOICES else 14
    figures = read.dashboard(days=days, currency=request.GET.get("currency") or None)
    chart = {
        "labels": [d.day.isoformat() for d in figures.days],
        "deposits": [read.major(d.deposits, figures.currency) for d in figures.days],
        "withdrawals": [read.major(d.withdrawals, figures.currency) for d in figures.days],
        "net": [read.major(d.net, figures.currency) for d in figures.days],
        "clients": [d.new_clients for d in figures.days],
        "text": {
            "deposits": gettext("Deposits"),
            "withdrawals": gettext("Withdrawals"),
            "net": gettext("Net"),
            "clients": gettext("New clients"),
        },
    }
    rows = [
        {
            "day": d.day,
            "deposits": read.money(d.deposits, figures.currency),
            "withdrawals": read.money(d.withdrawals, figures.currency),
            "net": read.money(d.net, figures.currency),
            "new_clients": d.new_clients,
        }
        for d in reversed(figures.days)
    ]
    held = sorted(roles_of(request.user))
    return render(
        request,
        "backoffice/dashboard.html",
        {
            "figures": figures,
            "chart": chart,
            "rows": rows,
            "days": days,
            "day_choices": DAY_CHOICES,
            "totals": {
                k: read.money(v, figures.currency)
                for k, v in figures.totals.items()
                if k in ("deposits", "withdrawals", "net")
            },
            "roles": [RoleLabel(r, gettext(ROLE_NAMES.get(r, r))) for r in held],
            "queues": [q for q in figures.queues if has_role(request.user, *q.roles)],
            "lagging": [r for r in figures.lag or [] if r.undelivered or r.pending],
        },
    )
