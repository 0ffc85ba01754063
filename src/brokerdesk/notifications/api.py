"""The notifications API, mounted at /api/v1/notifications/: the signed-in user's messages
(unread first), marking them read, and their preferences. Nobody sees another's."""

from datetime import datetime
from typing import Any
from uuid import UUID

from django.http import HttpRequest
from ninja import Router, Schema, Status

from brokerdesk.notifications import queries, services
from brokerdesk.staff.api import SessionUser, domain_errors

router = Router(tags=["notifications"], auth=SessionUser())


def _uid(request: HttpRequest) -> int:
    """The signed-in user's id (the access guard made sure there is one)."""
    return int(request.user.pk or 0)


class NotificationOut(Schema):
    id: UUID
    kind: str
    subject: str
    body: str
    created_at: datetime
    read: bool


class PreferencesIO(Schema):
    language: str = ""
    channels: dict[str, dict[str, bool]] = {}


@router.get("/", response=list[NotificationOut])
def inbox(request: HttpRequest, limit: int = 100) -> Any:
    """My messages, unread first."""
    return queries.inbox(_uid(request), limit=limit)


@router.post("/{notification_id}/read", response={204: None})
@domain_errors
def read(request: HttpRequest, notification_id: UUID) -> Any:
    """Mark one of my messages read."""
    services.mark_read(notification_id, user_id=_uid(request))
    return Status(204, None)


@router.post("/read-all", response={200: dict[str, int]})
def read_all(request: HttpRequest) -> Any:
    """Mark all my messages read."""
    return {"marked": services.mark_all_read(user_id=_uid(request))}


def _preferences(user_id: int) -> dict[str, Any]:
    audience_rows = queries.preferences(user_id, "client") + queries.preferences(user_id, "ib")
    return {
        "language": queries.language_of(user_id),
        "channels": {r.kind: {"email": r.email, "in_app": r.in_app} for r in audience_rows},
    }


@router.get("/preferences", response=PreferencesIO)
def get_preferences(request: HttpRequest) -> Any:
    """My language and, per kind, e-mail and in-app on or off."""
    return _preferences(_uid(request))


@router.put("/preferences", response=PreferencesIO)
@domain_errors
def put_preferences(request: HttpRequest, payload: PreferencesIO) -> Any:
    """Save my preferences (kinds not named: both channels on)."""
    services.set_preferences(
        user_id=_uid(request), language=payload.language, channels=payload.channels
    )
    return _preferences(_uid(request))
