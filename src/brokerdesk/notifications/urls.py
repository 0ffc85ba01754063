"""Pages of notifications: /portal/notifications/… and /partners/notifications/…."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from brokerdesk.notifications import views

app_name = "notifications"
urlpatterns: list[URLPattern | URLResolver] = []
for _surface, _prefix, _name in (
    ("portal", "portal", "portal"),
    ("partners", "partners", "partner"),
):
    urlpatterns += [
        path(f"{_prefix}/notifications/", views.inbox(_surface), name=f"{_name}_list"),
        path(
            f"{_prefix}/notifications/preferences/",
            views.preferences(_surface),
            name=f"{_name}_preferences",
        ),
        path(
            f"{_prefix}/notifications/read-all/",
            views.read_all(_surface),
            name=f"{_name}_read_all",
        ),
        path(
            f"{_prefix}/notifications/<uuid:notification_id>/read/",
            views.read(_surface),
            name=f"{_name}_read",
        ),
    ]
