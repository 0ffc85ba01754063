"""The reporting API router, mounted at /api/v1/reporting/.

``GET reports/{slug}?start=&end=``: a report as JSON (money in integer minor units, volume in
MT5 units of 1/10,000 lot). Finance, auditor and admin see every report; a partner manager
the IB reports. ``GET operations/projections``: projection freshness (admin, auditor, dealing).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema

from brokerdesk.core.errors import NotFound, PermissionDenied, ValidationError
from brokerdesk.reporting import operations, queries
from brokerdesk.staff.api import staff_only
from brokerdesk.staff.roles import Role, has_role

router = Router(tags=["reporting"])


class ColumnOut(Schema):
    key: str
    label: str
    kind: str


class ReportOut(Schema):
    slug: str
    title: str
    start: date
    end: date
    columns: list[ColumnOut]
    rows: list[dict[str, Any]]


class ProjectionOut(Schema):
    name: str
    events: int
    last_event_at: str | None
    behind_s: float | None
    idle_s: float | None


@router.get(
    "/reports/{slug}",
    response=ReportOut,
    auth=staff_only(Role.FINANCE, Role.AUDITOR, Role.PARTNER_MANAGER),
)
def report(
    request: HttpRequest, slug: str, start: date, end: date, ib_id: str = ""
) -> dict[str, Any]:
    """One report over ``start``..``end`` (both included), read from the rollups.

    ``ib_id`` narrows an IB report to that IB and its subtree.
    """
    if slug not in queries.REPORTS:
        raise NotFound("No such report.", code="report_not_found", field="slug")
    if slug not in queries.IB_REPORTS and not has_role(request.user, Role.FINANCE, Role.AUDITOR):
        raise PermissionDenied(
            "This report needs the role finance or auditor.", code="role_required", field="slug"
        )
    if ib_id and slug in queries.IB_REPORTS:
        try:
            network = queries.subtree_of(ib_id)
        except ValueError:
            raise ValidationError("ib_id is not a UUID.", code="bad_uuid", field="ib_id") from None
        found = queries.REPORTS[slug](start, end, ib_ids=network)
    else:
        found = queries.REPORTS[slug](start, end)
    return {
        "slug": found.slug,
        "title": str(found.title),
        "start": found.start,
        "end": found.end,
        "columns": [{"key": c.key, "label": str(c.label), "kind": c.kind} for c in found.columns],
        "rows": [
            {k: (v.isoformat() if isinstance(v, date) else v) for k, v in row.items()}
            for row in found.rows
        ],
    }


@router.get(
    "/operations/projections",
    response=list[ProjectionOut],
    auth=staff_only(Role.AUDITOR, Role.DEALING),
)
def projections(request: HttpRequest) -> list[dict[str, Any]]:
    """Freshness of each reporting projection."""
    return [
        {
            "name": row.name,
            "events": row.events,
            "last_event_at": row.last_event_at.isoformat() if row.last_event_at else None,
            "behind_s": row.behind_s,
            "idle_s": row.idle_s,
        }
        for row in operations.projection_rows()
    ]
