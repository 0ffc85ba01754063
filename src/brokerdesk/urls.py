"""URL map: the API, the metrics endpoint, the back office and the pages."""

from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.urls import include, path

from brokerdesk.api import api
from brokerdesk.core.views import health, home, metrics

# The admin signs in through allauth (e-mail verification, MFA, rate limits), never on its own.
admin.site.login = secure_admin_login(admin.site.login)  # type: ignore[method-assign]

urlpatterns = [
    path("", home, name="home"),
    path("healthz", health, name="health"),
    path("metrics", metrics, name="metrics"),
    path("api/v1/", api.urls),
    path("backoffice/admin/", admin.site.urls),
    path("", include("brokerdesk.bonuses.urls")),
    path("", include("brokerdesk.propfirm.urls")),
    path("", include("brokerdesk.automations.urls")),
    path("", include("brokerdesk.support.urls")),
    path("", include("brokerdesk.notifications.urls")),
    path("", include("brokerdesk.reporting.urls")),
    path("backoffice/", include("brokerdesk.backoffice.urls")),
    path("portal/", include("brokerdesk.portal.urls")),
    path("partners/", include("brokerdesk.partnerportal.urls")),
    path("accounts/", include("allauth.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
]
