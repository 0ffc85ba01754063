"""The vocabulary of support: categories, queues, priorities, the status machine, escalation
paths, which staff role works which queue, and the default SLA targets.

Everything here is data; services and views read it, none of them repeats it.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet

from django.utils.translation import gettext_lazy as _

from brokerdesk.core.errors import IllegalTransition, ValidationError
from brokerdesk.staff.roles import Role

CATEGORIES: dict[str, object] = {
    "kyc": _("Verification (KYC)"),
    "deposits": _("Deposits"),
    "withdrawals": _("Withdrawals"),
    "platform_access": _("Platform access"),
    "ib_dispute": _("Partner (IB) dispute"),
    "other": _("Other"),
}

QUEUES: dict[str, object] = {
    "support": _("Support"),
    "compliance": _("Compliance"),
    "finance": _("Finance"),
    "dealing": _("Dealing"),
}

# The staff role that works each queue (admin works them all; the auditor reads them all).
QUEUE_ROLES: dict[str, Role] = {
    "support": Role.SUPPORT,
    "compliance": Role.COMPLIANCE_OFFICER,
    "finance": Role.FINANCE,
    "dealing": Role.DEALING,
}
READ_ONLY_ROLES: tuple[Role, ...] = (Role.AUDITOR,)

# Where a ticket may be escalated from each queue (support is the first line).
ESCALATIONS: dict[str, frozenset[str]] = {
    "support": frozenset({"compliance", "finance", "dealing"}),
    "compliance": frozenset({"support", "finance"}),
    "finance": frozenset({"support", "compliance"}),
    "dealing": frozenset({"support", "compliance"}),
}

PRIORITIES: dict[str, object] = {
    "low": _("Low"),
    "normal": _("Normal"),
    "high": _("High"),
    "urgent": _("Urgent"),
}
PRIORITY_ORDER = {"urgent": 0, "high": 1, "normal": 2, "low": 3}

# (first response, resolution) in minutes; the SlaTarget rows override these.
DEFAULT_SLA: dict[str, tuple[int, int]] = {
    "urgent": (30, 4 * 60),
    "high": (2 * 60, 24 * 60),
    "normal": (8 * 60, 72 * 60),
    "low": (24 * 60, 120 * 60),
}

STATUSES: dict[str, object] = {
    "new": _("New"),
    "open": _("Open"),
    "pending_client": _("Waiting for you"),
    "resolved": _("Resolved"),
    "closed": _("Closed"),
}
STAFF_STATUS_LABELS: dict[str, object] = {
    **STATUSES,
    "pending_client": _("Pending client"),
}
OPEN_STATUSES = frozenset({"new", "open", "pending_client"})

TICKET_TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"open", "pending_client", "resolved"}),
    "open": frozenset({"pending_client", "resolved"}),
    "pending_client": frozenset({"open", "resolved"}),
    "resolved": frozenset({"open", "closed"}),  # open again = reopen
    "closed": frozenset(),  # final: a later message opens a new ticket
}

SOURCES = frozenset({"portal", "email", "staff", "api", "system"})
LINK_KINDS = frozenset(
    {"deposit", "withdrawal", "ticket", "bonus", "challenge", "commission", "case", "account"}
)
PAYMENT_LINK_KINDS = frozenset({"deposit", "withdrawal"})


def check_transition(current: str, target: str) -> None:
    """Raise ``IllegalTransition`` unless ``current → target`` is in the table."""
    if target not in STATUSES:
        raise ValidationError(
            f"{target!r} is not a ticket status ({', '.join(STATUSES)}).",
            code="invalid_status",
            field="status",
        )
    if target not in TICKET_TRANSITIONS.get(current, frozenset()):
        allowed = ", ".join(sorted(TICKET_TRANSITIONS.get(current, ()))) or "nothing"
        raise IllegalTransition(
            f"A ticket that is {current} cannot become {target} (allowed: {allowed}).",
            field="status",
            current=current,
            target=target,
        )


def check_choice(value: str, choices: Mapping[str, object] | AbstractSet[str], field: str) -> str:
    """Return ``value`` when it is one of ``choices``, else a ``ValidationError`` naming them."""
    if value not in choices:
        raise ValidationError(
            f"{value!r} is not a valid {field} (one of {', '.join(sorted(choices))}).",
            code=f"invalid_{field}",
            field=field,
        )
    return value
