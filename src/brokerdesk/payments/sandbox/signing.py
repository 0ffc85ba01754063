"""Webhook signatures of the sandbox PSP: ``Sandbox-Signature: t=<unix>,v1=<hex>``.

Like Stripe's scheme: the signed payload is ``f"{t}.{raw body}"`` and ``v1`` is its
HMAC-SHA256 under the shared secret, in lowercase hex. Several ``v1`` values may be present
(secret rotation); one matching is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "Sandbox-Signature"
DEFAULT_TOLERANCE_S = 300


class SignatureError(Exception):
    """The signature header is missing, malformed, stale or does not match."""


def sign(body: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """The header value for ``body``."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(
    body: bytes,
    header: str | None,
    secret: str,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> int:
    """Check ``header`` against ``body``; return its timestamp or raise ``SignatureError``."""
    if not header:
        raise SignatureError("missing signature header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError("malformed timestamp") from None
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError("malformed signature header")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise SignatureError("timestamp outside the tolerance")
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    digest = expected.hexdigest()
    if not any(hmac.compare_digest(digest, c) for c in candidates):
        raise SignatureError("signature does not match")
    return timestamp
