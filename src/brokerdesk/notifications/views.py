"""Notification pages: the inbox (unread first, mark read) and the preferences, on the client
portal (/portal/notifications/) and the IB portal (/partners/notifications/). Each page shows
and changes only the signed-in user's own messages and settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from brokerdesk.core.errors import DomainError, NotFound
from brokerdesk.notifications import queries, services
from brokerdesk.notifications.kinds import kinds_for
from brokerdesk.partnerportal.access import partner_page
from brokerdesk.portal.access import client_page

View = Callable[..., HttpResponse]

SURFACES: dict[str, dict[str, Any]] = {
    "portal": {
        "guard": client_page,
        "audience": "client",
        "list": "notifications:portal_list",
        "preferences": "notifications:portal_preferences",
        "read": "notifications:portal_read",
        "read_all": "notifications:portal_read_all",
    },
    "partners": {
        "guard": partner_page,
        "audience": "ib",
        "list": "notifications:partner_list",
        "preferences": "notifications:partner_preferences",
        "read": "notifications:partner_read",
        "read_all": "notifications:partner_read_all",
    },
}


def _uid(request: HttpRequest) -> int:
    """The signed-in user's id (the access guard made sure there is one)."""
    return int(request.user.pk or 0)


def _urls(surface: str) -> dict[str, str]:
    return {k: v for k, v in SURFACES[surface].items() if k not in ("guard", "audience")}


def inbox(surface: str) -> View:
    """The inbox page of ``surface``."""

    @SURFACES[surface]["guard"]
    def view(request: HttpRequest) -> HttpResponse:
        user_id = _uid(request)
        return render(
            request,
            "notifications/inbox.html",
            {
                "items": queries.inbox(user_id),
                "unread": queries.unread_count(user_id),
                "urls": _urls(surface),
            },
        )

    return view


def read(surface: str) -> View:
    """Mark one message read (POST); htmx gets the item back, others the inbox."""

    @SURFACES[surface]["guard"]
    def view(request: HttpRequest, notification_id: UUID) -> HttpResponse:
        if request.method != "POST":
            return redirect(SURFACES[surface]["list"])
        try:
            services.mark_read(notification_id, user_id=_uid(request))
        except NotFound:
            raise Http404 from None
        if request.headers.get("HX-Request"):
            item = next(n for n in queries.inbox(_uid(request)) if n.id == notification_id)
            return render(request, "notifications/_item.html", {"n": item, "urls": _urls(surface)})
        return redirect(SURFACES[surface]["list"])

    return view


def read_all(surface: str) -> View:
    """Mark every message read (POST)."""

    @SURFACES[surface]["guard"]
    def view(request: HttpRequest) -> HttpResponse:
        if request.method == "POST":
            count = services.mark_all_read(user_id=_uid(request))
            if count:
                messages.success(request, _("All messages are marked read."))
        return redirect(SURFACES[surface]["list"])

    return view


def preferences(surface: str) -> View:
    """The preferences page: language, and per kind e-mail and in-app on or off."""

    @SURFACES[surface]["guard"]
    def view(request: HttpRequest) -> HttpResponse:
        user_id = _uid(request)
        audience = SURFACES[surface]["audience"]
        status = 200
        if request.method == "POST":
            channels = {
                k.code: {
                    "email": request.POST.get(f"email-{k.code}") == "on",
                    "in_app": request.POST.get(f"in_app-{k.code}") == "on",
                }
                for k in kinds_for(audience)
            }
            try:
                services.set_preferences(
                    user_id=user_id, language=request.POST.get("language", ""), channels=channels
                )
            except DomainError as exc:
                messages.error(request, exc.message)
                status = 400
            else:
                messages.success(request, _("Your notification preferences were saved."))
                return redirect(SURFACES[surface]["preferences"])
        return render(
            request,
            "notifications/preferences.html",
            {
                "rows": queries.preferences(user_id, audience),
                "language": queries.language_of(user_id),
                "language_choices": settings.LANGUAGES,
                "urls": _urls(surface),
            },
            status=status,
        )

    return view
