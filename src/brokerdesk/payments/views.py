"""The PSP webhook endpoint: a plain Django view (no session, no CSRF; the signature is the
authentication). It answers 200 for processed and duplicate events, 400 for a bad signature."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from brokerdesk.core.errors import DomainError
from brokerdesk.payments import services


def handle_webhook(request: HttpRequest, provider: str) -> JsonResponse:
    """Verify, record in the inbox and process one PSP webhook."""
    try:
        outcome = services.receive_webhook(provider, request.body, request.headers)
    except DomainError as error:
        return JsonResponse(error.as_dict(), status=error.http_status)
    return JsonResponse({"outcome": outcome})


psp_webhook = csrf_exempt(require_POST(handle_webhook))
