"""Read side of notifications: a user's messages (unread first) and preferences."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.db.models import F

from brokerdesk.notifications.kinds import CHANNELS, kinds_for
from brokerdesk.notifications.models import Email, Notification, Preference


@dataclass(frozen=True)
class NotificationView:
    """An in-app message."""

    id: UUID
    kind: str
    subject: str
    body: str
    created_at: datetime
    read: bool


@dataclass(frozen=True)
class PreferenceRow:
    """One kind's channel choices."""

    kind: str
    label: str
    email: bool
    in_app: bool


def inbox(user_id: int, *, limit: int = 100) -> list[NotificationView]:
    """The user's messages: unread first, then newest first."""
    rows = Notification.objects.filter(user_id=user_id).order_by(
        F("read_at").asc(nulls_first=True), "-created_at", "-id"
    )
    return [
        NotificationView(n.id, n.kind, n.subject, n.body, n.created_at, n.read_at is not None)
        for n in rows[: max(1, min(limit, 500))]
    ]


def unread_count(user_id: int) -> int:
    """How many of the user's messages are unread."""
    return Notification.objects.filter(user_id=user_id, read_at__isnull=True).count()


def language_of(user_id: int) -> str:
    """The user's chosen language ("" when they chose none)."""
    pref = Preference.objects.filter(user_id=user_id).first()
    return pref.language if pref else ""


def preferences(user_id: int, audience: str) -> list[PreferenceRow]:
    """The channel choices of every kind the user's audience (client or ib) receives."""
    pref = Preference.objects.filter(user_id=user_id).first()
    chosen = pref.channels if pref else {}
    rows = []
    for kind in kinds_for(audience):
        channels = {c: bool(chosen.get(kind.code, {}).get(c, True)) for c in CHANNELS}
        rows.append(
            PreferenceRow(kind.code, str(kind.label), channels["email"], channels["in_app"])
        )
    return rows


def emails_to(address: str) -> list[Email]:
    """E-mails written to an address, newest first (support and tests)."""
    return list(Email.objects.filter(to_address=address).order_by("-created_at"))
