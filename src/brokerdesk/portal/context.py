"""Template context shared by every page: which surface is showing and who is looking."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from brokerdesk.staff.roles import is_staff_member

SURFACES = (("/backoffice/", "backoffice"), ("/partners/", "partners"), ("/portal/", "portal"))


def surface(request: HttpRequest) -> dict[str, Any]:
    """``surface`` (portal, partners, backoffice or accounts) and ``is_staff_member``."""
    current = next((name for prefix, name in SURFACES if request.path.startswith(prefix)), "")
    user = getattr(request, "user", None)
    return {
        "surface": current or "accounts",
        "is_staff_member": bool(user is not None and is_staff_member(user)),
    }
