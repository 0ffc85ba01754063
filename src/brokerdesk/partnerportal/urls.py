"""URLs of the IB portal, mounted at ``/partners/``."""

from __future__ import annotations

from django.urls import path

from brokerdesk.partnerportal import views

app_name = "partnerportal"
urlpatterns = [path("", views.dashboard, name="dashboard")]
