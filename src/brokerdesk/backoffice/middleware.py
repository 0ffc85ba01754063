"""Staff must set up a second factor before they see any page or call the API.

A signed-in staff member without an active TOTP or WebAuthn authenticator is sent to the
authenticator set-up page, from every page except the account pages themselves (where the
set-up and sign-out live), static files, health and metrics. A JSON API call under ``/api/``
from such a session is refused with 403 ``mfa_required`` (a redirect to an HTML page would
only confuse an API client).

Scope: sessions signed in through allauth (every sign-in form of this site, the admin's
included, is allauth's). Sessions made outside allauth (``Client.force_login`` in tests)
carry no allauth authentication record and are left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from allauth.account.authentication import get_authentication_records
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.utils.translation import gettext as _

from brokerdesk.backoffice.mfa import has_second_factor, mfa_required

EXEMPT_PREFIXES = ("/accounts/", "/healthz", "/metrics", "/i18n/")
API_PREFIX = "/api/"
API_DOCS = ("/api/v1/docs", "/api/v1/openapi.json")


class StaffMfaRequiredMiddleware:
    """Redirect staff without a second factor to the TOTP set-up page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.exempt = (*EXEMPT_PREFIXES, "/" + settings.STATIC_URL.lstrip("/"))

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if (
            user is not None
            and not request.path.startswith(self.exempt)
            and mfa_required(user)
            and get_authentication_records(request, user)
            and not has_second_factor(user)
        ):
            if request.path.startswith(API_PREFIX):
                if request.path.startswith(API_DOCS):
                    return self.get_response(request)
                return JsonResponse(
                    {
                        "code": "mfa_required",
                        "message": _("Set up two-factor authentication before using the API."),
                        "field": "user",
                    },
                    status=403,
                )
            messages.warning(
                request,
                _("Staff accounts need two-factor authentication: set up an authenticator app."),
            )
            target = reverse("mfa_activate_totp")
            return HttpResponseRedirect(f"{target}?{urlencode({'next': request.get_full_path()})}")
        return self.get_response(request)
