"""Plain views of core: the landing page, a health check and the Prometheus metrics."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


def home(request: HttpRequest) -> HttpResponse:
    """The landing page for visitors (open an account, sign in); a signed-in user goes
    straight to their own surface (staff: back office, partners: IB portal, clients: portal)."""
    user = request.user
    if user.is_authenticated:
        from brokerdesk.partners.queries import ib_id_for_user
        from brokerdesk.staff.roles import is_staff_member

        if is_staff_member(user):
            return redirect("/backoffice/")
        if ib_id_for_user(user) is not None:
            from brokerdesk.clients.queries import client_id_for_user

            if client_id_for_user(user) is None:
                return redirect("/partners/")
        return redirect("/portal/")
    return render(request, "core/home.html")


def health(request: HttpRequest) -> JsonResponse:
    """Liveness and database reachability."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok", "database": connection.vendor})


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics in the text exposition format."""
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
