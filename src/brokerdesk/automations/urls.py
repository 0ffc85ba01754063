"""Pages of automations (paths under /portal/, /partners/ or /backoffice/)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver

app_name = "automations"
urlpatterns: list[URLPattern | URLResolver] = []
