"""Back-office pages of reporting: the reports (with date ranges and CSV/XLSX downloads) and
the Operations view.

Reports: admin, finance and auditor see every report; a partner manager sees the IB reports
only. Operations: admin, auditor and dealing.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django import forms
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _

from brokerdesk.backoffice.access import staff_page
from brokerdesk.core import clock
from brokerdesk.core.errors import ValidationError
from brokerdesk.core.money import get_currency
from brokerdesk.portal.formatting import format_count, format_decimal, format_lots, format_minor
from brokerdesk.reporting import exports, operations, queries
from brokerdesk.reporting.queries import Column, Report
from brokerdesk.staff.roles import Role, has_role

REPORT_ROLES = (Role.FINANCE, Role.AUDITOR, Role.PARTNER_MANAGER)
FULL_REPORT_ROLES = (Role.FINANCE, Role.AUDITOR)
OPERATIONS_ROLES = (Role.AUDITOR, Role.DEALING)

REPORT_TITLES = {
    "ib-daily": _("Deposits and volume by IB by day"),
    "client-profitability": _("Client profitability"),
    "ib-performance": _("IB performance"),
    "payment-methods": _("Payment-method performance"),
    "aml-statistics": _("AML statistics"),
}
REPORT_BLURBS = {
    "ib-daily": _("Each IB's deposits, withdrawals, volume and commission, day by day."),
    "client-profitability": _("Clients' trading result and funding, most profitable first."),
    "ib-performance": _("Per IB: active clients, funding, volume, clients' result, commission."),
    "payment-methods": _("Deposits, reversals and payouts per payment provider."),
    "aml-statistics": _("AML alerts per monitoring rule and severity."),
}


class RangeForm(forms.Form):
    """The report's period (both days included)."""

    start = forms.DateField(label=_("From"), widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label=_("To"), widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict[str, Any]:
        """Turn a reversed or too long range into a form error on the end date."""
        data = super().clean() or {}
        if data.get("start") and data.get("end"):
            try:
                queries.check_range(data["start"], data["end"])
            except ValidationError as exc:
                self.add_error("end", exc.message)
        return data


def default_range() -> tuple[date, date]:
    """The last 30 days, today included."""
    today = clock.now().date()
    return today - timedelta(days=29), today


def allowed_reports(user: Any) -> list[str]:
    """The report slugs ``user`` may open."""
    if has_role(user, *FULL_REPORT_ROLES):
        return list(queries.REPORTS)
    return [slug for slug in queries.REPORTS if slug in queries.IB_REPORTS]


@staff_page(*REPORT_ROLES)
def reports_index(request: HttpRequest) -> HttpResponse:
    """The list of reports this user may open."""
    items = [
        {"slug": slug, "title": REPORT_TITLES[slug], "blurb": REPORT_BLURBS[slug]}
        for slug in allowed_reports(request.user)
    ]
    return render(request, "reporting/reports_index.html", {"reports": items})


def _cell(column: Column, row: dict[str, Any]) -> str:
    value = row.get(column.key)
    if value is None or value == "":
        return "—"
    if column.kind == "money":
        currency = str(row.get("currency", ""))
        try:
            get_currency(currency)
        except ValidationError:
            return format_decimal(exports.money_decimal(int(value), currency), 2)
        return format_minor(int(value), currency)
    if column.kind == "lots":
        return format_lots(int(value))
    if column.kind == "count":
        return format_count(int(value))
    if column.kind == "date":
        return value.isoformat()
    return str(value)


def display_rows(report: Report) -> list[list[dict[str, Any]]]:
    """The report's rows as display cells (label, text, numeric or not)."""
    numeric = {"money", "lots", "count", "percent"}
    return [
        [
            {
                "label": c.label,
                "text": _cell(c, row),
                "num": c.kind in numeric,
                "nowrap": c.kind == "date",
            }
            for c in report.columns
        ]
        for row in report.rows
    ]


def volume_chart(report: Report) -> dict[str, Any] | None:
    """Lots traded per day over the report's rows (all IBs), for the chart; None if no volume."""
    by_day: dict[str, int] = {}
    for row in report.rows:
        if "volume" in row and "day" in row:
            key = row["day"].isoformat()
            by_day[key] = by_day.get(key, 0) + int(row["volume"])
    if not any(by_day.values()):
        return None
    days = sorted(by_day)
    return {
        "label": str(_("Volume (lots)")),
        "labels": days,
        "values": [str(exports.lots(by_day[d])) for d in days],
    }


@staff_page(*REPORT_ROLES)
def report_page(request: HttpRequest, slug: str) -> HttpResponse:
    """One report over the chosen dates, as a table or a CSV/XLSX download."""
    if slug not in queries.REPORTS:
        raise Http404(slug)
    if slug not in allowed_reports(request.user):
        return render(
            request,
            "backoffice/forbidden.html",
            {"needed_roles": [str(r) for r in FULL_REPORT_ROLES]},
            status=403,
        )
    start, end = default_range()
    form = RangeForm(request.GET or {"start": start, "end": end})
    report = None
    if form.is_valid():
        report = queries.REPORTS[slug](form.cleaned_data["start"], form.cleaned_data["end"])
        download = request.GET.get("format", "")
        if download == "csv":
            response = HttpResponse(exports.to_csv(report), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = (
                f'attachment; filename="{exports.filename(report, "csv")}"'
            )
            return response
        if download == "xlsx":
            response = HttpResponse(
                exports.to_xlsx(report),
                content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            )
            response["Content-Disposition"] = (
                f'attachment; filename="{exports.filename(report, "xlsx")}"'
            )
            return response
    query = request.GET.copy()
    query.pop("format", None)
    if not query:
        query.update({"start": start.isoformat(), "end": end.isoformat()})
    return render(
        request,
        "reporting/report.html",
        {
            "slug": slug,
            "title": REPORT_TITLES[slug],
            "blurb": REPORT_BLURBS[slug],
            "form": form,
            "report": report,
            "rows": display_rows(report) if report else [],
            "query": query.urlencode(),
            "open_aml_cases": queries.open_aml_cases() if slug == "aml-statistics" else None,
            "chart": volume_chart(report) if report else None,
        },
        status=200 if form.is_valid() else 400,
    )


@staff_page(Role.ADMIN, *OPERATIONS_ROLES)
def operations_page(request: HttpRequest) -> HttpResponse:
    """Stream depth and lag, projection freshness, idempotency rejections, slow queries."""
    snap = operations.snapshot()
    return render(request, "reporting/operations.html", {"snap": snap})
