"""Verification providers' webhooks: signature checks over the raw body, and result mapping.

Sumsub signs the raw body with the webhook secret: ``X-Payload-Digest`` is the hex HMAC and
``X-Payload-Digest-Alg`` names the hash (HMAC_SHA1_HEX, HMAC_SHA256_HEX, HMAC_SHA512_HEX).
Onfido sends ``X-SHA2-Signature``, the hex HMAC-SHA256 of the raw body with the webhook token.
Signatures are compared in constant time; a JSON body is never re-serialised before checking.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from brokerdesk.compliance.kyc import KycState
from brokerdesk.core.errors import PermissionDenied

SUMSUB_ALGORITHMS = {
    "HMAC_SHA1_HEX": hashlib.sha1,
    "HMAC_SHA256_HEX": hashlib.sha256,
    "HMAC_SHA512_HEX": hashlib.sha512,
}


def secret(name: str) -> str:
    """A provider secret from settings or the environment ('' when not configured)."""
    return str(getattr(settings, name, "") or os.environ.get(name, ""))


def _refuse(message: str, code: str) -> PermissionDenied:
    return PermissionDenied(message, code=code, field="signature")


def verify_sumsub(body: bytes, digest: str | None, algorithm: str | None, key: str) -> None:
    """Raise ``PermissionDenied`` unless ``digest`` is the HMAC of ``body`` under ``key``."""
    if not key:
        raise _refuse("The Sumsub webhook secret is not configured.", "provider_not_configured")
    hash_fn = SUMSUB_ALGORITHMS.get(algorithm or "HMAC_SHA256_HEX")
    if hash_fn is None:
        raise _refuse(f"Unsupported digest algorithm {algorithm!r}.", "bad_algorithm")
    expected = hmac.new(key.encode(), body, hash_fn).hexdigest()
    if not digest or not hmac.compare_digest(expected, digest.strip().lower()):
        raise _refuse("The webhook signature does not match.", "bad_signature")


def verify_onfido(body: bytes, signature: str | None, token: str) -> None:
    """Raise ``PermissionDenied`` unless ``signature`` is the HMAC-SHA256 of ``body``."""
    if not token:
        raise _refuse("The Onfido webhook token is not configured.", "provider_not_configured")
    expected = hmac.new(token.encode(), body, hashlib.sha256).hexdigest()
    if not signature or not hmac.compare_digest(expected, signature.strip().lower()):
        raise _refuse("The webhook signature does not match.", "bad_signature")


@dataclass(frozen=True)
class Outcome:
    """What a provider event means for the KYC case (``target`` None: nothing to do)."""

    target: KycState | None
    reason: str
    final: bool = False


def sumsub_outcome(payload: dict[str, Any]) -> Outcome:
    """Map a Sumsub webhook to a KYC transition."""
    kind = payload.get("type", "")
    result = payload.get("reviewResult") or {}
    if kind == "applicantCreated":
        return Outcome(KycState.DOCUMENTS_PENDING, "Sumsub applicant created")
    if kind == "applicantPending":
        return Outcome(KycState.UNDER_VERIFICATION, "Sumsub: documents submitted")
    if kind == "applicantOnHold":
        return Outcome(KycState.MANUAL_REVIEW, "Sumsub: on hold for manual review")
    if kind == "applicantReset":
        return Outcome(KycState.DOCUMENTS_PENDING, "Sumsub: applicant reset")
    if kind == "applicantReviewed":
        labels = ", ".join(result.get("rejectLabels") or [])
        comment = result.get("moderationComment") or ""
        if result.get("reviewAnswer") == "GREEN":
            return Outcome(KycState.APPROVED, "Sumsub review GREEN")
        if result.get("reviewAnswer") == "RED":
            detail = "; ".join(x for x in (labels, comment) if x) or "no detail"
            if result.get("reviewRejectType") == "FINAL":
                return Outcome(KycState.REJECTED, f"Sumsub review RED (final): {detail}", True)
            return Outcome(KycState.DOCUMENTS_PENDING, f"Sumsub review RED (retry): {detail}")
    return Outcome(None, f"Sumsub {kind or 'event'}: nothing to do")


def onfido_outcome(payload: dict[str, Any]) -> Outcome:
    """Map an Onfido webhook to a KYC transition (workflow runs carry their decision)."""
    body = payload.get("payload") or {}
    action, obj = body.get("action", ""), body.get("object") or {}
    if action == "workflow_run.completed":
        status = obj.get("status", "")
        mapping = {
            "approved": Outcome(KycState.APPROVED, "Onfido workflow approved"),
            "declined": Outcome(KycState.REJECTED, "Onfido workflow declined"),
            "review": Outcome(KycState.MANUAL_REVIEW, "Onfido workflow needs review"),
            "error": Outcome(KycState.MANUAL_REVIEW, "Onfido workflow ended in error"),
        }
        return mapping.get(status, Outcome(None, f"Onfido workflow {status}: nothing to do"))
    # check.completed / report.completed carry no result: it must be fetched from ``href``.
    return Outcome(None, f"Onfido {action or 'event'}: nothing to do")
