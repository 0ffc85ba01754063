"""The JSON API: one Ninja instance that mounts every module's router."""

from ninja import NinjaAPI

from brokerdesk.ledger.api import router as ledger_router

api = NinjaAPI(title="Brokerdesk API", version="1", urls_namespace="api")
api.add_router("/ledger/", ledger_router)
