"""Pages of reporting, mounted at the site root (paths under /backoffice/)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from brokerdesk.reporting import views

app_name = "reporting"
urlpatterns: list[URLPattern | URLResolver] = [
    path("backoffice/reports/", views.reports_index, name="reports"),
    path("backoffice/reports/<slug:slug>/", views.report_page, name="report"),
    path("backoffice/operations/", views.operations_page, name="operations"),
]
