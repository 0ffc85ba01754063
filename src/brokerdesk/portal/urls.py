"""URLs of the client portal, mounted at ``/portal/``."""

from __future__ import annotations

from django.urls import path

from brokerdesk.portal import views

app_name = "portal"
urlpatterns = [path("", views.dashboard, name="dashboard")]
