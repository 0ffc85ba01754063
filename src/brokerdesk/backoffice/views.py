"""Back-office pages (the start: a dashboard that honours the staff roles)."""

from __future__ import annotations

from typing import NamedTuple

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext, gettext_noop

from brokerdesk.staff.roles import Role, roles_of

ROLE_NAMES: dict[str, str] = {
    Role.ADMIN: gettext_noop("Administrator"),
    Role.COMPLIANCE_OFFICER: gettext_noop("Compliance officer"),
    Role.FINANCE: gettext_noop("Finance"),
    Role.SUPPORT: gettext_noop("Support"),
    Role.DEALING: gettext_noop("Dealing and risk"),
    Role.PARTNER_MANAGER: gettext_noop("Partner manager"),
    Role.AUDITOR: gettext_noop("Auditor (read-only)"),
}


class RoleLabel(NamedTuple):
    """A role code and the name people read."""

    code: str
    label: str


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """The back-office start page: the member's roles and the sections they may open."""
    held = sorted(roles_of(request.user))
    if not held and not request.user.is_staff:
        return render(request, "backoffice/forbidden.html", status=403)
    return render(
        request,
        "backoffice/dashboard.html",
        {
            "roles": [RoleLabel(r, gettext(ROLE_NAMES.get(r, r))) for r in held],
            "can_admin": request.user.is_staff,
        },
    )
