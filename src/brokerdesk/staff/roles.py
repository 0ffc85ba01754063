"""The role table and the checks built on it.

Roles are Django groups named after ``Role``; each bundles the permissions in ``ROLES``.
``require_role`` guards service functions and API endpoints; ``ensure_different_approver``
enforces maker-checker (the approver is never the requester) inside services.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group, Permission

from brokerdesk.core.errors import PermissionDenied


class Role(StrEnum):
    """Back-office roles."""

    ADMIN = "admin"
    COMPLIANCE_OFFICER = "compliance_officer"
    FINANCE = "finance"
    SUPPORT = "support"
    DEALING = "dealing"
    PARTNER_MANAGER = "partner_manager"
    AUDITOR = "auditor"


# Permissions as "app_label.codename"; missing ones (apps not installed yet) are skipped.
ROLES: dict[Role, tuple[str, ...]] = {
    Role.ADMIN: ("*",),
    Role.COMPLIANCE_OFFICER: (
        "clients.view_client",
        "clients.change_client",
        "compliance.view_kyccase",
        "compliance.decide_kyc",
        "compliance.manage_flags",
        "compliance.view_document",
        "compliance.review_document",
        "compliance.manage_screening",
    ),
    Role.FINANCE: (
        "clients.view_client",
        "compliance.view_kyccase",
        "staff.approve_withdrawal",
        "staff.manage_payments",
    ),
    Role.SUPPORT: ("clients.view_client", "clients.change_client", "compliance.view_kyccase"),
    Role.DEALING: ("clients.view_client", "staff.manage_trading"),
    Role.PARTNER_MANAGER: ("clients.view_client", "staff.manage_partners"),
    Role.AUDITOR: (
        "clients.view_client",
        "compliance.view_kyccase",
        "compliance.view_document",
        "staff.view_reports",
    ),
}

STAFF_ROLES: frozenset[str] = frozenset(r.value for r in Role)


def sync_roles(using: str = "default") -> None:
    """Create or update one group per role with exactly the permissions of the table."""
    for role, perms in ROLES.items():
        group, _ = Group.objects.using(using).get_or_create(name=role.value)
        if perms == ("*",):
            wanted = list(Permission.objects.using(using).all())
        else:
            wanted = []
            for dotted in perms:
                app_label, codename = dotted.split(".", 1)
                perm = (
                    Permission.objects.using(using)
                    .filter(content_type__app_label=app_label, codename=codename)
                    .first()
                )
                if perm is not None:
                    wanted.append(perm)
        group.permissions.set(wanted)


def roles_of(user: AbstractBaseUser | AnonymousUser | None) -> frozenset[str]:
    """The staff roles a user holds (a superuser holds ``admin``)."""
    if user is None or not user.is_authenticated:
        return frozenset()
    cached: frozenset[str] | None = getattr(user, "_brokerdesk_roles", None)
    if cached is not None:
        return cached
    groups: Any = getattr(user, "groups", None)
    names: set[str] = set()
    if groups is not None:
        names.update(groups.filter(name__in=STAFF_ROLES).values_list("name", flat=True))
    if getattr(user, "is_superuser", False):
        names.add(Role.ADMIN.value)
    roles = frozenset(names)
    setattr(user, "_brokerdesk_roles", roles)  # noqa: B010 - a per-request cache on the user
    return roles


def has_role(user: AbstractBaseUser | AnonymousUser | None, *roles: Role | str) -> bool:
    """True when ``user`` holds any of ``roles``; ``admin`` holds them all."""
    held = roles_of(user)
    return Role.ADMIN.value in held or any(str(r) in held for r in roles)


def is_staff_member(user: AbstractBaseUser | AnonymousUser | None) -> bool:
    """True when ``user`` holds at least one staff role."""
    return bool(roles_of(user))


def require_role(user: AbstractBaseUser | AnonymousUser | None, *roles: Role | str) -> None:
    """Raise ``PermissionDenied`` unless ``user`` holds one of ``roles`` (or is admin)."""
    if not has_role(user, *roles):
        wanted = ", ".join(str(r) for r in roles) or "a staff role"
        raise PermissionDenied(f"This needs the role {wanted}.", code="role_required", roles=wanted)


def grant_role(user: AbstractBaseUser, *roles: Role | str) -> None:
    """Put ``user`` in the groups of ``roles`` (creating them when missing)."""
    for role in roles:
        group, _ = Group.objects.get_or_create(name=str(role))
        user.groups.add(group)  # type: ignore[attr-defined]
    if hasattr(user, "_brokerdesk_roles"):
        del user._brokerdesk_roles


def actor_label(actor: Any) -> str:
    """A stable audit label: ``user:<pk>`` for users, the string itself for system actors."""
    if isinstance(actor, str):
        if not actor:
            raise PermissionDenied("An actor is required.", code="actor_required", field="by")
        return actor
    if actor is not None and getattr(actor, "is_authenticated", False):
        return f"user:{actor.pk}"
    raise PermissionDenied("An authenticated actor is required.", code="actor_required", field="by")


def ensure_different_approver(requester: Any, approver: Any) -> None:
    """Maker-checker: raise ``PermissionDenied`` when the approver is the requester."""
    if actor_label(requester) == actor_label(approver):
        raise PermissionDenied(
            "The approver must be a different person from the requester.",
            code="same_approver",
            field="approved_by",
        )
