"""URLs of the IB portal, mounted at ``/partners/``."""

from __future__ import annotations

from django.urls import path

from brokerdesk.partnerportal import views

app_name = "partnerportal"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("links/", views.links, name="links"),
    path("tree/", views.tree, name="tree"),
    path("clients/", views.clients, name="clients"),
    path("clients/<uuid:client_id>/", views.client_deals, name="client_deals"),
    path("payouts/", views.payouts, name="payouts"),
]
