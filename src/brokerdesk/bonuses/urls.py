"""Pages of bonuses, mounted at the site root (paths under /portal/, /partners/, /backoffice/)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver

app_name = "bonuses"
urlpatterns: list[URLPattern | URLResolver] = []
