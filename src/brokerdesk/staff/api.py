"""API helpers for role checks: a Ninja auth class and a domain-error wrapper for routers."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from ninja.errors import HttpError
from ninja.security import APIKeyCookie

from brokerdesk.core.errors import DomainError
from brokerdesk.staff.roles import Role, has_role

F = TypeVar("F", bound=Callable[..., Any])


class SessionUser(APIKeyCookie):
    """Session authentication; returns the signed-in user (client or staff)."""

    param_name: str = settings.SESSION_COOKIE_NAME

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        user = getattr(request, "user", None)
        return user if user is not None and user.is_authenticated else None


class RoleAuth(SessionUser):
    """Session authentication that also requires one of ``roles`` (403 otherwise)."""

    def __init__(self, *roles: Role | str) -> None:
        super().__init__()
        self.roles = roles

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        user = super().authenticate(request, key)
        if user is None:
            return None
        if not has_role(user, *self.roles):
            raise HttpError(403, "This needs the role " + ", ".join(map(str, self.roles)) + ".")
        return user


def staff_only(*roles: Role | str) -> RoleAuth:
    """The auth dependency for an endpoint that needs one of ``roles``."""
    return RoleAuth(*roles)


def domain_errors(view: F) -> F:
    """Turn a ``DomainError`` raised by a service into its JSON body and HTTP status."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except DomainError as error:
            return JsonResponse(error.as_dict(), status=error.http_status)

    return wrapper  # type: ignore[return-value]
