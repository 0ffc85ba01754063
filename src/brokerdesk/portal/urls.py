"""URLs of the client portal, mounted at ``/portal/``."""

from __future__ import annotations

from django.urls import path

from brokerdesk.portal import trading_views, views, wallet_views

app_name = "portal"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("profile/", views.profile, name="profile"),
    path("verification/", views.kyc, name="kyc"),
    path("wallets/", wallet_views.wallets, name="wallets"),
    path("wallets/deposit/", wallet_views.deposit, name="deposit"),
    path(
        "wallets/deposits/<uuid:deposit_id>/",
        wallet_views.deposit_status,
        name="deposit_status",
    ),
    path("wallets/withdraw/", wallet_views.withdraw, name="withdraw"),
    path("accounts/", trading_views.accounts, name="accounts"),
    path("accounts/open/", trading_views.open_account, name="open_account"),
    path("accounts/transfer/", trading_views.transfer, name="transfer"),
    path("history/", trading_views.history, name="history"),
    path("statements/", wallet_views.statements_page, name="statements"),
    path("join/<slug:code>/", views.join, name="join"),
]
