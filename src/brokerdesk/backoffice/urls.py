"""URLs of the back office, mounted at ``/backoffice/`` (the Django admin sits under it)."""

from __future__ import annotations

from django.urls import path

from brokerdesk.backoffice import views

app_name = "backoffice"
urlpatterns = [path("", views.dashboard, name="dashboard")]
