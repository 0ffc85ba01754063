"""The JSON API: one Ninja instance that mounts every module's router.

Domain errors become JSON bodies ``{"code", "message", "field"}`` with their HTTP status.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI

from brokerdesk.automations.api import router as automations_router
from brokerdesk.bonuses.api import router as bonuses_router
from brokerdesk.clients.api import router as clients_router
from brokerdesk.compliance.api import router as compliance_router
from brokerdesk.core.errors import DomainError
from brokerdesk.ledger.api import router as ledger_router
from brokerdesk.notifications.api import router as notifications_router
from brokerdesk.partners.api import router as partners_router
from brokerdesk.payments.api import router as payments_router
from brokerdesk.propfirm.api import router as propfirm_router
from brokerdesk.reporting.api import router as reporting_router
from brokerdesk.support.api import router as support_router
from brokerdesk.trading.api import router as trading_router

api = NinjaAPI(
    title="Brokerdesk API",
    version="1",
    urls_namespace="api",
    description="Brokerdesk's JSON API. Money is always an integer in the currency's minor units.",
)


@api.exception_handler(DomainError)
def domain_error(request: HttpRequest, exc: DomainError) -> HttpResponse:
    """Render a broken rule as a clear JSON error."""
    return api.create_response(request, exc.as_dict(), status=exc.http_status)


api.add_router("/ledger/", ledger_router)
api.add_router("/clients/", clients_router)
api.add_router("/compliance/", compliance_router)
api.add_router("/payments/", payments_router)
api.add_router("/partners/", partners_router)
api.add_router("/trading/", trading_router)
api.add_router("/bonuses/", bonuses_router)
api.add_router("/propfirm/", propfirm_router)
api.add_router("/automations/", automations_router)
api.add_router("/support/", support_router)
api.add_router("/notifications/", notifications_router)
api.add_router("/reporting/", reporting_router)
