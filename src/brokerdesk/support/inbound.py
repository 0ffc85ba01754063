"""Inbound e-mail: parse an RFC 822 message, check attachments, verify the relay's signature.

The mail relay (an MTA pipe into ``brokerdesk support-mail``, or an inbound-mail webhook to
``POST /api/v1/support/inbound-email``) hands over the raw message. The webhook signs it:
``X-Support-Timestamp`` (Unix seconds) and ``X-Support-Signature: sha256=<hex>``, the
HMAC-SHA256 of ``"<timestamp>." + body`` under the shared secret ``SUPPORT_INBOUND_SECRET``.
A signature older than five minutes is refused (a replay), and so is a wrong one; the
comparison is constant-time and the secret is never logged.

Attachments: at most ``MAX_ATTACHMENTS``, each at most ``MAX_ATTACHMENT_BYTES``, of the
``ALLOWED_TYPES`` (checked by declared type and by the file's first bytes); the others are
dropped and the drop is recorded on the message for staff.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage

from django.conf import settings
from django.utils.html import strip_tags

from brokerdesk.core.errors import PermissionDenied, ValidationError

MAX_EMAIL_BYTES = 15 * 1024 * 1024
MAX_ATTACHMENT_BYTES = 5 * 1024 * 1024
MAX_ATTACHMENTS = 5
MAX_BODY_CHARS = 20_000
SIGNATURE_MAX_AGE_S = 300
ALLOWED_TYPES: dict[str, tuple[bytes, ...]] = {
    # declared type → accepted leading bytes ("" = any text)
    "application/pdf": (b"%PDF-",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "text/plain": (b"",),
}
REFERENCE_RE = re.compile(r"\[?\b(T-[23456789A-HJ-NP-Z]{8})\b\]?")


@dataclass(frozen=True)
class IncomingFile:
    """A file on its way into a ticket (from an e-mail or an upload)."""

    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True)
class DroppedFile:
    """A file that was not kept, and why (type, size or count)."""

    filename: str
    content_type: str
    size: int
    reason: str


@dataclass(frozen=True)
class ParsedEmail:
    """What support needs from an inbound e-mail."""

    sender: str
    sender_name: str
    subject: str
    message_id: str
    body: str
    reference: str | None
    files: list[IncomingFile] = field(default_factory=list)
    dropped: list[DroppedFile] = field(default_factory=list)


def inbound_secret() -> str:
    """The shared secret of the inbound-mail webhook ('' when not configured)."""
    return str(
        getattr(settings, "SUPPORT_INBOUND_SECRET", "")
        or os.environ.get("SUPPORT_INBOUND_SECRET", "")
    )


def sign(body: bytes, timestamp: int, secret: str) -> str:
    """The signature header value for ``body`` at ``timestamp`` (what the relay sends)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify_signature(
    body: bytes, timestamp: str | None, signature: str | None, *, secret: str, now: datetime
) -> None:
    """Raise ``PermissionDenied`` unless ``signature`` signs ``body`` at a recent ``timestamp``."""
    if not secret:
        raise PermissionDenied(
            "The inbound-mail secret is not configured.",
            code="inbound_not_configured",
            field="signature",
        )
    try:
        stamp = int(timestamp or "")
    except ValueError:
        raise PermissionDenied(
            "X-Support-Timestamp must be Unix seconds.", code="bad_timestamp", field="timestamp"
        ) from None
    if abs(now.timestamp() - stamp) > SIGNATURE_MAX_AGE_S:
        raise PermissionDenied(
            "The signature is too old or from the future (more than five minutes).",
            code="stale_signature",
            field="timestamp",
        )
    expected = sign(body, stamp, secret)
    if not signature or not hmac.compare_digest(expected, signature.strip()):
        raise PermissionDenied(
            "The inbound-mail signature does not match.", code="bad_signature", field="signature"
        )


def find_reference(subject: str) -> str | None:
    """The ticket reference (``T-XXXXXXXX``) a subject carries, if any."""
    found = REFERENCE_RE.search(subject.upper())
    return found.group(1) if found else None


def parse(raw: bytes) -> ParsedEmail:
    """Parse an RFC 822 message; refuse one that is too big or has no usable sender."""
    if len(raw) > MAX_EMAIL_BYTES:
        raise ValidationError(
            f"The e-mail is larger than {MAX_EMAIL_BYTES // (1024 * 1024)} MB.",
            code="email_too_large",
            field="message",
        )
    message = email.message_from_bytes(raw, policy=email.policy.default)
    if not isinstance(message, EmailMessage):  # pragma: no cover - the default policy's class
        raise ValidationError("Not an e-mail message.", code="not_email", field="message")
    name, address = email.utils.parseaddr(str(message.get("From", "")))
    address = address.strip().lower()
    if "@" not in address or len(address) > 254:
        raise ValidationError(
            "The e-mail has no usable From address.", code="no_sender", field="from"
        )
    subject = " ".join(str(message.get("Subject", "")).split())[:200]
    message_id = str(message.get("Message-ID", "")).strip()[:250]
    if not message_id:
        message_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    files, dropped = _attachments(message)
    return ParsedEmail(
        sender=address,
        sender_name=name.strip()[:200],
        subject=subject,
        message_id=message_id,
        body=_body(message),
        reference=find_reference(subject),
        files=files,
        dropped=dropped,
    )


def _body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        text = str(part.get_content())
    except (LookupError, ValueError):
        payload = part.get_payload(decode=True)
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if part.get_content_subtype() == "html":
        text = strip_tags(text)
    return text.strip()[:MAX_BODY_CHARS]


def _attachments(message: EmailMessage) -> tuple[list[IncomingFile], list[DroppedFile]]:
    kept: list[IncomingFile] = []
    dropped: list[DroppedFile] = []
    for part in message.iter_attachments():
        filename = (part.get_filename() or "attachment").strip()[:200]
        content_type = part.get_content_type()
        payload = part.get_payload(decode=True)
        content = payload if isinstance(payload, bytes) else b""
        reason = check_file(filename, content_type, content, already=len(kept))
        if reason:
            dropped.append(DroppedFile(filename, content_type, len(content), reason))
        else:
            kept.append(IncomingFile(filename, content_type, content))
    return kept, dropped


def check_file(filename: str, content_type: str, content: bytes, *, already: int = 0) -> str:
    """Why a file may not be kept ("" when it may): type, content, size or count."""
    magic = ALLOWED_TYPES.get(content_type)
    if magic is None:
        return "type_not_allowed"
    if not any(content.startswith(m) for m in magic) or (
        content_type == "text/plain" and b"\x00" in content[:4096]
    ):
        return "content_does_not_match_type"
    if len(content) > MAX_ATTACHMENT_BYTES:
        return "too_large"
    if not content:
        return "empty"
    if already >= MAX_ATTACHMENTS:
        return "too_many"
    return ""
