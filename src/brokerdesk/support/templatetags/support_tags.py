"""Template filters of the support pages: labels people read for codes, and SLA badges."""

from __future__ import annotations

from django import template
from django.utils.translation import gettext_lazy as _

from brokerdesk.support import states

register = template.Library()

SLA_BADGES = {
    "breached": ("danger", _("SLA breached")),
    "due_soon": ("warning", _("Due soon")),
    "on_track": ("info", _("On track")),
    "met": ("success", _("SLA met")),
}
STATUS_TONES = {
    "new": "info",
    "open": "warning",
    "pending_client": "neutral",
    "resolved": "success",
    "closed": "neutral",
}
CHANGES = {
    "opened": _("Opened"),
    "status": _("Status"),
    "reopened": _("Reopened"),
    "escalated": _("Escalated"),
    "assigned": _("Assigned"),
    "priority": _("Priority"),
}
REASONS = {
    "type_not_allowed": _("file type not allowed"),
    "content_does_not_match_type": _("content does not match its type"),
    "too_large": _("too large"),
    "too_many": _("too many attachments"),
    "empty": _("empty file"),
}


@register.filter
def status_label(code: str) -> object:
    """A status as the client reads it."""
    return states.STATUSES.get(code, code)


@register.filter
def staff_status_label(code: str) -> object:
    """A status as staff read it."""
    return states.STAFF_STATUS_LABELS.get(code, code)


@register.filter
def status_tone(code: str) -> str:
    """The badge colour of a status."""
    return STATUS_TONES.get(code, "neutral")


@register.filter
def category_label(code: str) -> object:
    """A category's name."""
    return states.CATEGORIES.get(code, code)


@register.filter
def queue_label(code: str) -> object:
    """A queue's name."""
    return states.QUEUES.get(code, code)


@register.filter
def priority_label(code: str) -> object:
    """A priority's name."""
    return states.PRIORITIES.get(code, code)


@register.filter
def sla_tone(badge: str) -> str:
    """The badge colour of an SLA state."""
    return SLA_BADGES.get(badge, ("neutral", badge))[0]


@register.filter
def sla_label(badge: str) -> object:
    """An SLA state as people read it."""
    return SLA_BADGES.get(badge, ("neutral", badge))[1]


@register.filter
def drop_reason(code: str) -> object:
    """Why an attachment was dropped."""
    return REASONS.get(code, code)


@register.filter
def filesize(size: int) -> str:
    """Bytes as KB or MB (one decimal)."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    return f"{max(size, 1) / 1024:.1f} KB"


@register.filter
def get_item(mapping: dict[object, object], key: object) -> object:
    """``mapping[key]``, or "" when missing."""
    return mapping.get(key, "") if mapping else ""


@register.filter
def change_label(code: str) -> object:
    """A history action as people read it."""
    return CHANGES.get(code, code)
