"""Helpers shared by the back-office views: running a command for a form, htmx detection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.http import HttpRequest

from brokerdesk.core.errors import DomainError


def is_htmx(request: HttpRequest) -> bool:
    """True when htmx sent the request (it wants a fragment, not a page)."""
    return request.headers.get("HX-Request") == "true"


def run_command(form: forms.Form, command: Callable[[], Any]) -> tuple[Any, DomainError | None]:
    """Run a service command; a domain error becomes a form error on the field it names.

    Returns the command's result (``None`` on error) and the error, if any.
    """
    try:
        return command(), None
    except DomainError as error:
        field = error.field if error.field in form.fields else None
        form.add_error(field, error.message)
        return None, error


def error_status(request: HttpRequest, error: DomainError | None, *, invalid: bool = False) -> int:
    """The status of a page that shows a refused command: the error's own (403, 409, …), or 400
    for an invalid form; htmx fragments always get 200 so htmx swaps them in."""
    if is_htmx(request):
        return 200
    if error is not None:
        return error.http_status
    return 400 if invalid else 200


def row_form(form_class: type[forms.Form], key: str, data: Any = None, **kwargs: Any) -> Any:
    """A form for one row of a list: its control ids carry ``key`` so labels stay unique."""
    return form_class(data, auto_id=f"f-{key}-%s", **kwargs)


def form_for_row(
    form_class: type[forms.Form], key: str, failed: dict[str, Any] | None, **kwargs: Any
) -> Any:
    """The refused form when ``key`` is the row it was posted for, else a fresh row form."""
    if failed and failed.get("target") == key:
        return failed["form"]
    return row_form(form_class, key, **kwargs)


def flash_if_unshown(
    request: HttpRequest, form: forms.Form, error: DomainError | None, context: dict[str, Any]
) -> dict[str, Any]:
    """When the refused form's row is no longer on the page (someone else dealt with it), show
    the refusal as a message at the top instead; returns ``context``."""
    from django.contrib import messages

    if error is None:
        return context
    for value in context.values():
        rows = value if isinstance(value, list) else [value]
        for row in rows:
            if row is form or (isinstance(row, dict) and any(v is form for v in row.values())):
                return context
    messages.error(request, error.message)
    return context
