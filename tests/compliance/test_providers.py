"""Verification-provider webhooks: real signature schemes, idempotent, mapped to transitions."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from brokerdesk.compliance import providers, queries, services
from brokerdesk.compliance.models import ProviderEvent
from brokerdesk.core.errors import PermissionDenied
from tests.clients.factories import individual

pytestmark = pytest.mark.django_db
SUMSUB_SECRET = "sumsub-test-secret"
ONFIDO_TOKEN = "wU99mE6jJ7nXOLFwZ0tJymM1lpI15pZh"

# Onfido's published test vector for its webhook verifier (onfido-python SDK tests).
ONFIDO_VECTOR_BODY = (
    '{"payload":{"resource_type":"check","action":"check.completed",'
    '"object":{"id":"f2302f45-227d-413d-ad61-09ec077a086a","status":"complete",'
    '"completed_at_iso8601":"2024-04-04T09:21:21Z",'
    '"href":"https://api.onfido.com/v3.6/checks/f2302f45-227d-413d-ad61-09ec077a086a"}}}'
)
ONFIDO_VECTOR_SIGNATURE = "77ebc3e418f26be6eebb47f7ebe551321de26734fc273961e075fc9ab163d9c7"


@pytest.fixture(autouse=True)
def secrets(settings):
    settings.SUMSUB_WEBHOOK_SECRET = SUMSUB_SECRET
    settings.ONFIDO_WEBHOOK_TOKEN = ONFIDO_TOKEN


def sumsub(client_id, kind, created_ms, algorithm="HMAC_SHA256_HEX", **review):
    body = json.dumps(
        {
            "applicantId": f"app-{client_id.hex[-12:]}",
            "inspectionId": "insp-1",
            "externalUserId": str(client_id),
            "levelName": "basic-kyc-level",
            "type": kind,
            "reviewStatus": "completed" if review else "pending",
            "createdAtMs": created_ms,
            **({"reviewResult": review} if review else {}),
        }
    ).encode()
    hash_fn = providers.SUMSUB_ALGORITHMS[algorithm]
    digest = hmac.new(SUMSUB_SECRET.encode(), body, hash_fn).hexdigest()
    return body, {"X-Payload-Digest": digest, "X-Payload-Digest-Alg": algorithm}


def test_onfidos_published_test_vector_verifies_and_a_changed_digit_does_not():
    body = ONFIDO_VECTOR_BODY.encode()
    providers.verify_onfido(body, ONFIDO_VECTOR_SIGNATURE, ONFIDO_TOKEN)
    with pytest.raises(PermissionDenied):
        providers.verify_onfido(body, ONFIDO_VECTOR_SIGNATURE[:-1] + "8", ONFIDO_TOKEN)
    with pytest.raises(PermissionDenied):
        providers.verify_onfido(body + b" ", ONFIDO_VECTOR_SIGNATURE, ONFIDO_TOKEN)


@pytest.mark.parametrize("algorithm", ["HMAC_SHA1_HEX", "HMAC_SHA256_HEX", "HMAC_SHA512_HEX"])
def test_sumsub_review_green_approves_with_every_digest_algorithm(algorithm):
    alice = individual()
    services.receive_sumsub_webhook(*sumsub(alice.pk, "applicantPending", 1000, algorithm))

    outcome = services.receive_sumsub_webhook(
        *sumsub(alice.pk, "applicantReviewed", 2000, algorithm, reviewAnswer="GREEN")
    )

    assert outcome == "moved:approved"
    assert queries.kyc_history(alice.pk)[-1].actor == "system:sumsub"


def test_a_repeated_delivery_is_applied_once():
    alice = individual()
    delivery = sumsub(alice.pk, "applicantPending", 1000)

    assert services.receive_sumsub_webhook(*delivery) == "moved:under_verification"
    assert services.receive_sumsub_webhook(*delivery) == "duplicate"
    assert len(queries.kyc_history(alice.pk)) == 1


def test_forged_and_unsupported_signatures_are_refused_and_nothing_is_recorded(client):
    alice = individual()
    body, headers = sumsub(alice.pk, "applicantReviewed", 5, reviewAnswer="GREEN")

    forged = client.post(
        "/api/v1/compliance/webhooks/sumsub",
        body.replace(b"GREEN", b"GREEN "),
        content_type="application/json",
        headers=headers,
    )
    md5 = client.post(
        "/api/v1/compliance/webhooks/sumsub",
        body,
        content_type="application/json",
        headers={**headers, "X-Payload-Digest-Alg": "HMAC_MD5_HEX"},
    )

    assert (forged.status_code, forged.json()["code"]) == (403, "bad_signature")
    assert (md5.status_code, md5.json()["code"]) == (403, "bad_algorithm")
    assert not ProviderEvent.objects.exists()
    assert queries.kyc_status(alice.pk).state == "lead"


def test_red_reviews_ask_for_documents_again_or_reject_for_good():
    retry, final = individual(), individual()
    for c in (retry, final):
        services.receive_sumsub_webhook(*sumsub(c.pk, "applicantPending", 1))
    services.receive_sumsub_webhook(
        *sumsub(
            retry.pk,
            "applicantReviewed",
            2,
            reviewAnswer="RED",
            reviewRejectType="RETRY",
            rejectLabels=["BAD_PROOF_OF_ADDRESS"],
        )
    )
    services.receive_sumsub_webhook(
        *sumsub(final.pk, "applicantReviewed", 2, reviewAnswer="RED", reviewRejectType="FINAL")
    )

    assert queries.kyc_status(retry.pk).state == "documents_pending"
    assert "BAD_PROOF_OF_ADDRESS" in queries.kyc_history(retry.pk)[-1].reason
    assert queries.kyc_status(final.pk).state == "rejected"
    assert queries.kyc_status(final.pk).rejection_final


def test_out_of_order_deliveries_end_in_the_right_state():
    alice = individual()
    reviewed = sumsub(alice.pk, "applicantReviewed", 2000, reviewAnswer="GREEN")
    pending = sumsub(alice.pk, "applicantPending", 1000)

    assert services.receive_sumsub_webhook(*reviewed) == "illegal:lead"
    assert services.receive_sumsub_webhook(*pending) == "moved:under_verification"

    assert queries.kyc_status(alice.pk).state == "approved"
    late_reset = sumsub(alice.pk, "applicantCreated", 500)
    assert services.receive_sumsub_webhook(*late_reset) == "stale"
    assert queries.kyc_status(alice.pk).state == "approved"


def test_an_onfido_workflow_run_decides_the_case_it_belongs_to(client):
    alice = individual()
    services.submit_kyc(alice.pk, by="system:onfido", provider="onfido", provider_reference="wr-1")
    body = json.dumps(
        {
            "payload": {
                "resource_type": "workflow_run",
                "action": "workflow_run.completed",
                "object": {
                    "id": "wr-1",
                    "status": "approved",
                    "completed_at_iso8601": "2026-05-01T10:00:00Z",
                    "href": "https://api.onfido.com/v3.6/workflow_runs/wr-1",
                },
            }
        }
    ).encode()
    signature = hmac.new(ONFIDO_TOKEN.encode(), body, hashlib.sha256).hexdigest()

    response = client.post(
        "/api/v1/compliance/webhooks/onfido",
        body,
        content_type="application/json",
        headers={"X-SHA2-Signature": signature},
    )

    assert response.json() == {"outcome": "moved:approved"}
    assert queries.kyc_status(alice.pk).state == "approved"
    vector = services.receive_onfido_webhook(
        ONFIDO_VECTOR_BODY.encode(), {"X-SHA2-Signature": ONFIDO_VECTOR_SIGNATURE}
    )
    assert vector == "unknown_client"  # a check we never started


def test_webhooks_are_refused_when_no_secret_is_configured(settings):
    settings.SUMSUB_WEBHOOK_SECRET = ""
    with pytest.raises(PermissionDenied) as error:
        services.receive_sumsub_webhook(*sumsub(individual().pk, "applicantPending", 1))
    assert error.value.code == "provider_not_configured"
