"""URL map: the API, the metrics endpoint, the back office and the pages."""

from django.contrib import admin
from django.urls import path

from brokerdesk.api import api
from brokerdesk.core.views import health, home, metrics

urlpatterns = [
    path("", home, name="home"),
    path("healthz", health, name="health"),
    path("metrics", metrics, name="metrics"),
    path("api/", api.urls),
    path("backoffice/admin/", admin.site.urls),
]
