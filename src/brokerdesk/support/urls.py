"""Pages of support, mounted at the site root (paths under /portal/, /partners/, /backoffice/)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver

app_name = "support"
urlpatterns: list[URLPattern | URLResolver] = []
