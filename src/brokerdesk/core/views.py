"""Plain views of core: the landing page, a health check and the Prometheus metrics."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


def home(request: HttpRequest) -> HttpResponse:
    """The landing page with links to every surface."""
    return render(request, "core/home.html")


def health(request: HttpRequest) -> JsonResponse:
    """Liveness and database reachability."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok", "database": connection.vendor})


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics in the text exposition format."""
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
