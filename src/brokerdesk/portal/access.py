"""Access to client-portal pages: signed in and owning a client record.

``client_page`` sets ``request.client_id`` to the signed-in user's client; a view reads and
changes only that client's data, so one client can never open another's page by its URL.
Staff without a client record are sent to the back office.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from brokerdesk.clients.queries import client_id_for_user
from brokerdesk.staff.roles import is_staff_member

View = Callable[..., HttpResponse]


def client_page(view: View) -> View:
    """Require a signed-in client; the view finds its id in ``request.client_id``."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        client_id = client_id_for_user(request.user)
        if client_id is None:
            if is_staff_member(request.user):
                return redirect("backoffice:dashboard")
            return render(request, "portal/no_client.html", status=404)
        request.client_id = client_id  # type: ignore[attr-defined]
        return view(request, *args, **kwargs)

    return wrapped
