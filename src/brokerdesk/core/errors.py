"""Domain errors: a stable code, a message a person can read, and the field at fault."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A rule was broken; nothing was written. ``code`` is stable, ``message`` is for people."""

    code: str = "domain_error"
    http_status: int = 400

    def __init__(
        self, message: str, *, code: str | None = None, field: str | None = None, **details: Any
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.field = field
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        """The error as the API returns it."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        if self.details:
            body["details"] = {k: str(v) for k, v in self.details.items()}
        return body


class ValidationError(DomainError):
    """Bad input: names the field and the rule."""

    code = "invalid"


class NotFound(DomainError):
    """The thing asked for does not exist (or is not visible to the caller)."""

    code = "not_found"
    http_status = 404


class Conflict(DomainError):
    """The request contradicts what is already recorded."""

    code = "conflict"
    http_status = 409


class IllegalTransition(Conflict):
    """A state machine was asked for a transition its table does not allow."""

    code = "illegal_transition"


class PermissionDenied(DomainError):
    """The actor may not do this."""

    code = "forbidden"
    http_status = 403
