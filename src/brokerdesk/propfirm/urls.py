"""Pages of propfirm, mounted at the site root (paths under /portal/ and /backoffice/)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from brokerdesk.propfirm import views

app_name = "propfirm"
urlpatterns: list[URLPattern | URLResolver] = [
    path("portal/challenges/", views.portal_challenges, name="portal_challenges"),
    path("portal/challenges/live/", views.portal_challenges_live, name="portal_challenges_live"),
    path("portal/challenges/buy/<uuid:product_id>/", views.portal_buy, name="portal_buy"),
    path("portal/challenges/payout/<uuid:account_id>/", views.portal_payout, name="portal_payout"),
    path("backoffice/prop/", views.bo_challenges, name="bo_challenges"),
    path("backoffice/prop/decide/<uuid:account_id>/", views.bo_decide, name="bo_decide"),
    path("backoffice/prop/products/", views.bo_products, name="bo_products"),
    path(
        "backoffice/prop/products/<uuid:product_id>/", views.bo_product_edit, name="bo_product_edit"
    ),
    path(
        "backoffice/prop/products/<uuid:product_id>/active/",
        views.bo_product_active,
        name="bo_product_active",
    ),
    path("backoffice/prop/corrections/", views.bo_corrections, name="bo_corrections"),
    path(
        "backoffice/prop/corrections/<int:correction_id>/resolve/",
        views.bo_correction_resolve,
        name="bo_correction_resolve",
    ),
]
