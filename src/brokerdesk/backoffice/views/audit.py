"""The audit-log viewer: filters, before/after differences and the chains' verification."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

from brokerdesk.backoffice import read
from brokerdesk.backoffice.access import staff_page
from brokerdesk.backoffice.forms import AuditFilterForm
from brokerdesk.backoffice.views.common import is_htmx
from brokerdesk.core import audit, clock
from brokerdesk.staff.roles import Role

READERS = (Role.AUDITOR,)
VERIFY_CACHE_KEY = "backoffice:audit-verification"
PAGE_SIZE = 100


@dataclass(frozen=True)
class Change:
    """One key of an entry's before/after that differs."""

    key: str
    before: str
    after: str


def _show(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    """The keys whose values differ between ``before`` and ``after`` (new and removed too)."""
    return [
        Change(key, _show(before.get(key)), _show(after.get(key)))
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]


@staff_page(*READERS)
def audit_log(request: HttpRequest) -> HttpResponse:
    """Entries filtered by actor, object, action and dates, each with its differences."""
    form = AuditFilterForm(request.GET or None)
    rows: list[dict[str, Any]] = []
    if not form.is_bound or form.is_valid():
        data = form.cleaned_data if form.is_bound else {}
        zone = clock.now().tzinfo
        since = data.get("since")
        until = data.get("until")
        found = audit.entries(
            actor=read.actor_label_for(data.get("actor") or ""),
            action=(data.get("action") or "").strip(),
            object_type=(data.get("object_type") or "").strip(),
            object_id=(data.get("object_id") or "").strip(),
            since=datetime.combine(since, time.min, tzinfo=zone) if since else None,
            until=datetime.combine(until, time.min, tzinfo=zone) + timedelta(days=1)
            if until
            else None,
            limit=PAGE_SIZE,
        )
        names = read.actor_names([e.actor for e in found])
        rows = [
            {"entry": e, "actor": names[e.actor], "changes": diff(e.before, e.after)} for e in found
        ]
    template = "backoffice/_audit_rows.html" if is_htmx(request) else "backoffice/audit_log.html"
    return render(
        request,
        template,
        {
            "form": form,
            "rows": rows,
            "page_size": PAGE_SIZE,
            "last": cache.get(VERIFY_CACHE_KEY),
        },
        status=400 if form.is_bound and form.errors and not is_htmx(request) else 200,
    )


@require_POST
@staff_page(*READERS)
def audit_verify(request: HttpRequest) -> HttpResponse:
    """Recompute every chain's hashes (on request: it reads the whole log), remember the
    outcome for the next visitors and show it."""
    report = audit.verify_chain()
    last = {"report": report, "checked_at": clock.now()}
    cache.set(VERIFY_CACHE_KEY, last, timeout=None)
    return render(
        request, "backoffice/_audit_verify.html", {"last": last, "fragment": is_htmx(request)}
    )
