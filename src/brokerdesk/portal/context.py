"""Template context shared by every page: which surface is showing and who is looking."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from brokerdesk.core.nav import nav_links
from brokerdesk.staff.roles import is_staff_member, roles_of

SURFACES = (("/backoffice/", "backoffice"), ("/partners/", "partners"), ("/portal/", "portal"))


def surface(request: HttpRequest) -> dict[str, Any]:
    """``surface`` (portal, partners, backoffice or accounts), ``is_staff_member`` and
    ``nav`` (the menu entries of the surface this user may open)."""
    current = next((name for prefix, name in SURFACES if request.path.startswith(prefix)), "")
    user = getattr(request, "user", None)
    signed_in = bool(user is not None and user.is_authenticated)
    return {
        "surface": current or "accounts",
        "is_staff_member": bool(user is not None and is_staff_member(user)),
        "nav": nav_links(current, roles_of(user), request.path) if current and signed_in else [],
    }
