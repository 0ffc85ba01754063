"""Access to back-office pages: signed in, holding one of the page's staff roles.

Every back-office view is wrapped in ``staff_page(role, …)``; a signed-in user without the
role gets the 403 page that says so, an anonymous one is sent to sign in. Services check the
role again (``staff.roles.require_role``): a page is never the only guard.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from brokerdesk.staff.roles import Role, has_role, roles_of

View = Callable[..., HttpResponse]


def staff_page(*roles: Role | str) -> Callable[[View], View]:
    """Allow the view to staff holding any of ``roles`` (admin always; none listed = any role)."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            allowed = has_role(request.user, *roles) if roles else bool(roles_of(request.user))
            if not allowed:
                return render(
                    request,
                    "backoffice/forbidden.html",
                    {"needed_roles": [str(r) for r in roles]},
                    status=403,
                )
            return view(request, *args, **kwargs)

        return wrapped

    return decorate
