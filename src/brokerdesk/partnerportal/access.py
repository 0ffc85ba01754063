"""Access to IB-portal pages: signed in and owning an IB profile.

``partner_page`` sets ``request.ib_id``; every query the view makes passes it as the viewer,
so an IB sees only their own subtree (the partners queries refuse anything else).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from brokerdesk.partners.queries import ib_id_for_user

View = Callable[..., HttpResponse]


def partner_page(view: View) -> View:
    """Require a signed-in IB; the view finds its id in ``request.ib_id``."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        ib_id = ib_id_for_user(request.user)
        if ib_id is None:
            return render(request, "partnerportal/not_partner.html", status=403)
        request.ib_id = ib_id  # type: ignore[attr-defined]
        return view(request, *args, **kwargs)

    return wrapped
