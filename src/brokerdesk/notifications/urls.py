"""Pages of notifications (paths under /portal/, /partners/ or /backoffice/)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver

app_name = "notifications"
urlpatterns: list[URLPattern | URLResolver] = []
