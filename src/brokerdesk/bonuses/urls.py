"""Pages of bonuses, mounted at the site root (paths under /portal/ and /backoffice/)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from brokerdesk.bonuses import views

app_name = "bonuses"
urlpatterns: list[URLPattern | URLResolver] = [
    path("portal/bonuses/", views.portal_bonuses, name="portal"),
    path("portal/bonuses/preview/", views.portal_preview, name="preview"),
    path("backoffice/bonuses/", views.campaigns, name="campaigns"),
    path("backoffice/bonuses/new/", views.campaign_create, name="campaign_create"),
    path(
        "backoffice/bonuses/<uuid:campaign_id>/status/",
        views.campaign_status,
        name="campaign_status",
    ),
    path("backoffice/bonuses/grants/", views.grants, name="grants"),
    path("backoffice/bonuses/grants/new/", views.grant_create, name="grant_create"),
    path("backoffice/bonuses/grant/<uuid:bonus_id>/", views.bonus_detail, name="bonus_detail"),
    path(
        "backoffice/bonuses/grant/<uuid:bonus_id>/forfeit/",
        views.bonus_forfeit,
        name="bonus_forfeit",
    ),
]
