"""Who may run the partners module's staff commands."""

from __future__ import annotations

from typing import Any

from brokerdesk.core.errors import PermissionDenied
from brokerdesk.staff.roles import Role, actor_label, require_role


def staff_actor(by: Any, *roles: Role) -> str:
    """The audit label of ``by`` when it may act: a ``system:…`` actor (jobs, consumers,
    migrations) or a user holding one of ``roles``; ``PermissionDenied`` otherwise."""
    if isinstance(by, str):
        if by.startswith("system:"):
            return by
        raise PermissionDenied(
            "Staff actions need a signed-in user.", code="actor_required", field="by"
        )
    require_role(by, *roles)
    return actor_label(by)
