"""Notifications commands: the only writers of preferences, in-app messages and e-mails.

``notify`` renders a kind's subject and body in the recipient's language (their preference,
else the client record's language, else the site default) with ``translation.override``, then
writes an in-app message and/or an e-mail as the recipient's preferences say. Both are unique
per idempotency key (the event and the recipient), so a redelivered event notifies once.
E-mails are an outbox: written in the caller's transaction, sent by SMTP after the commit
(``send_pending``), and retried by a periodic job when the server was unreachable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

import structlog
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import formats, translation

from brokerdesk.core import clock
from brokerdesk.core.errors import NotFound, ValidationError
from brokerdesk.notifications.kinds import CHANNELS, KINDS, RULE_LABELS
from brokerdesk.notifications.models import Email, EmailStatus, Notification, Preference

log = structlog.get_logger(__name__)

MAX_EMAIL_ATTEMPTS = 5


@dataclass(frozen=True)
class Recipient:
    """Who a notification goes to, and how to reach them."""

    user_id: int | None
    client_id: UUID | None
    email: str
    name: str
    language: str


def _languages() -> set[str]:
    return {code for code, _name in settings.LANGUAGES}


def _user(user_id: int) -> Any:
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None:
        raise NotFound("No such user.", code="user_not_found", field="user_id")
    return user


def _preference(user_id: int | None) -> Preference | None:
    return Preference.objects.filter(user_id=user_id).first() if user_id is not None else None


def recipient_for(*, user_id: int | None = None, client_id: UUID | str | None = None) -> Recipient:
    """The recipient of a user or of a client (the client's login, if it has one)."""
    from brokerdesk.clients.queries import client_id_for_user, get_client

    if user_id is None and client_id is None:
        raise ValidationError("Name a user or a client.", code="no_recipient", field="user_id")
    client = get_client(client_id) if client_id is not None else None
    if user_id is None and client is not None:
        user_id = client.user_id
    user = _user(user_id) if user_id is not None else None
    if client is None and user is not None:
        own = client_id_for_user(user)
        client = get_client(own) if own else None
    pref = _preference(user_id)
    language = (pref.language if pref else "") or getattr(client, "preferred_language", "") or ""
    if language not in _languages():
        language = settings.LANGUAGE_CODE
    name = client.display_name if client else (user.get_full_name() if user else "")
    email = (user.email if user is not None and user.email else "") or (
        client.email if client else ""
    )
    return Recipient(user_id, client.id if client else None, email, name, language)


def channels_for(user_id: int | None, kind: str) -> dict[str, bool]:
    """Whether ``kind`` goes by e-mail and in-app for this user (default: both)."""
    pref = _preference(user_id)
    chosen = (pref.channels if pref else {}).get(kind, {})
    return {channel: bool(chosen.get(channel, True)) for channel in CHANNELS}


def _money(amount: Any, currency: Any) -> str:
    from brokerdesk.portal.formatting import format_minor

    try:
        return format_minor(int(amount), str(currency))
    except Exception:  # an unknown currency or a bad amount: show it raw, never fail
        return str(amount)


def render(kind: str, context: dict[str, Any], language: str, name: str) -> tuple[str, str]:
    """The subject and body of ``kind`` in ``language`` (numbers and dates localised too)."""
    with translation.override(language):
        data = {
            **{k: v for k, v in context.items() if isinstance(v, str | int | float | bool)},
            "name": name,
            "day": formats.date_format(_day(context), "DATE_FORMAT"),
        }
        if "amount" in context and "currency" in context:
            data["amount"] = _money(context["amount"], context["currency"])
        data.setdefault("reason", context.get("note") or context.get("reason") or "")
        if "rule" in data:
            data["rule"] = str(RULE_LABELS.get(str(data["rule"]), data["rule"]))
        subject = render_to_string(f"notifications/kinds/{kind}_subject.txt", data)
        body = render_to_string(f"notifications/kinds/{kind}_body.txt", data)
    return " ".join(subject.split())[:300], body.strip()


def _day(context: dict[str, Any]) -> date:
    return clock.now().date() if not context.get("occurred_at") else _parse_day(context)


def _parse_day(context: dict[str, Any]) -> date:
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(context["occurred_at"])).date()
    except ValueError:
        return clock.now().date()


def notify(
    *,
    user_id: int | None = None,
    client_id: UUID | None = None,
    kind: str,
    context: dict[str, Any],
    idempotency_key: str,
) -> None:
    """Tell a user (or a client) about something: in-app and/or by e-mail per their
    preferences, in their language. The same ``idempotency_key`` notifies once."""
    if kind not in KINDS:
        raise ValidationError(
            f"Unknown notification kind {kind!r}; one of {', '.join(KINDS)}.",
            code="unknown_kind",
            field="kind",
        )
    key = (idempotency_key or "").strip()
    if not key or len(key) > 190:
        raise ValidationError(
            "An idempotency key (at most 190 characters) is required.",
            code="required",
            field="idempotency_key",
        )
    recipient = recipient_for(user_id=user_id, client_id=client_id)
    channels = channels_for(recipient.user_id, kind)
    subject, body = render(kind, context, recipient.language, recipient.name)
    now = clock.now()
    with transaction.atomic():
        if channels["in_app"]:
            _insert_once(
                Notification(
                    user_id=recipient.user_id,
                    client_id=recipient.client_id,
                    kind=kind,
                    subject=subject,
                    body=body,
                    language=recipient.language,
                    idempotency_key=f"{key}:in_app",
                    created_at=now,
                )
            )
        if channels["email"] and recipient.email:
            made = _insert_once(
                Email(
                    user_id=recipient.user_id,
                    client_id=recipient.client_id,
                    kind=kind,
                    to_address=recipient.email,
                    subject=subject,
                    body=body,
                    language=recipient.language,
                    idempotency_key=f"{key}:email",
                    created_at=now,
                )
            )
            if made:
                transaction.on_commit(send_pending)


def _insert_once(row: Notification | Email) -> bool:
    """Insert ``row`` unless its idempotency key is taken; True when it was new."""
    if type(row).objects.filter(idempotency_key=row.idempotency_key).exists():
        return False
    try:
        with transaction.atomic():
            row.save(force_insert=True)
    except IntegrityError:
        return False
    return True


# ---------------------------------------------------------------------------- sending


def _claim(email_id: UUID, attempts: int) -> bool:
    """Take an e-mail for sending (one sender wins when two try at once)."""
    return bool(
        Email.objects.filter(pk=email_id, status=EmailStatus.QUEUED, attempts=attempts).update(
            attempts=attempts + 1
        )
    )


def send_pending(limit: int = 100) -> int:
    """Send queued e-mails by the configured backend (SMTP); return how many were sent.

    A failure is recorded (without the server's credentials) and retried next time; after
    ``MAX_EMAIL_ATTEMPTS`` the e-mail is marked failed."""
    sent = 0
    queued = list(
        Email.objects.filter(status=EmailStatus.QUEUED)
        .order_by("created_at")
        .values_list("pk", "attempts")[:limit]
    )
    for email_id, attempts in queued:
        if not _claim(email_id, attempts):
            continue
        email = Email.objects.get(pk=email_id)
        try:
            EmailMessage(
                subject=email.subject,
                body=email.body,
                from_email=settings.DEFAULT_FROM_EMAIL,
                to=[email.to_address],
                headers={"Content-Language": email.language},
            ).send()
        except Exception as exc:  # the SMTP server said no or is unreachable
            failed = email.attempts >= MAX_EMAIL_ATTEMPTS
            Email.objects.filter(pk=email_id).update(
                status=EmailStatus.FAILED if failed else EmailStatus.QUEUED,
                error=f"{type(exc).__name__}: {exc}"[:500],
            )
            log.warning("notification_email_failed", email=str(email_id), error=type(exc).__name__)
            continue
        Email.objects.filter(pk=email_id).update(status=EmailStatus.SENT, sent_at=clock.now())
        sent += 1
    return sent


# ---------------------------------------------------------------------------- the inbox


def mark_read(notification_id: UUID | str, *, user_id: int) -> None:
    """Mark one of the user's own messages read (someone else's is ``NotFound``)."""
    updated = Notification.objects.filter(pk=notification_id, user_id=user_id)
    if not updated.exists():
        raise NotFound("No such message.", code="notification_not_found", field="id")
    updated.filter(read_at__isnull=True).update(read_at=clock.now())


def mark_all_read(*, user_id: int) -> int:
    """Mark every unread message of the user read; return how many."""
    return Notification.objects.filter(user_id=user_id, read_at__isnull=True).update(
        read_at=clock.now()
    )


def set_preferences(
    *, user_id: int, language: str, channels: dict[str, dict[str, bool]]
) -> Preference:
    """Save a user's language and per-kind channel choices (kinds not named: both on)."""
    language = (language or "").strip()
    if language and language not in _languages():
        raise ValidationError(
            f"Unknown language {language!r}.", code="unknown_language", field="language"
        )
    cleaned: dict[str, dict[str, bool]] = {}
    for kind, chosen in (channels or {}).items():
        if kind not in KINDS:
            raise ValidationError(
                f"Unknown notification kind {kind!r}.", code="unknown_kind", field="channels"
            )
        cleaned[kind] = {c: bool(chosen.get(c, True)) for c in CHANNELS}
    with transaction.atomic():
        pref, _created = Preference.objects.select_for_update().get_or_create(
            user_id=user_id, defaults={"updated_at": clock.now()}
        )
        pref.language, pref.channels, pref.updated_at = language, cleaned, clock.now()
        pref.save()
        return pref
