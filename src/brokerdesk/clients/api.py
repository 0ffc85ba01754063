"""The clients API: staff read and manage clients; a client reads only their own record.

A client asking for another client's id gets 404, as if it did not exist.
"""

from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

from django.http import HttpRequest
from ninja import Field, Router, Schema, Status

from brokerdesk.clients import queries, services
from brokerdesk.core.errors import NotFound
from brokerdesk.staff.api import SessionUser, domain_errors, staff_only
from brokerdesk.staff.roles import Role

router = Router(tags=["clients"])
session = SessionUser()


class ClientOut(Schema):
    id: UUID
    kind: str
    display_name: str
    email: str
    phone: str
    country: str
    nationality: str
    jurisdiction: str
    date_of_birth: date | None
    company_name: str
    registration_number: str
    segments: list[str]
    tags: list[str]
    registered_at: datetime


class IndividualIn(Schema):
    email: str
    first_name: str
    last_name: str
    date_of_birth: date
    country: str
    jurisdiction: str
    phone: str = ""
    nationality: str = ""
    address_line: str = ""
    city: str = ""
    postal_code: str = ""


class CorporateIn(Schema):
    email: str
    company_name: str
    registration_number: str
    country: str
    jurisdiction: str
    phone: str = ""
    address_line: str = ""
    city: str = ""
    postal_code: str = ""


class ContactChangeIn(Schema):
    changes: dict[str, str]
    reason: str


class LoginIn(Schema):
    platform: str
    server: str
    login: int
    currency: str
    is_live: bool
    trading_account_id: UUID | None = None


class LoginOut(Schema):
    platform: str
    server: str
    login: int
    currency: str
    is_live: bool
    trading_account_id: UUID | None


class TimelineOut(Schema):
    occurred_at: datetime
    kind: str
    summary: str
    data: dict[str, Any]


def visible_client(request: HttpRequest, client_id: UUID) -> queries.ClientView:
    """The client if the caller may see it; ``NotFound`` otherwise (no existence leak)."""
    if not queries.can_view_client(request.user, client_id):
        raise NotFound("No such client.", code="client_not_found", field="client_id")
    return queries.get_client(client_id)


def _out(view: queries.ClientView) -> dict[str, Any]:
    data = dict(view.__dict__)
    data["segments"], data["tags"] = list(view.segments), list(view.tags)
    return data


STAFF_WRITERS = (Role.SUPPORT, Role.COMPLIANCE_OFFICER)


@router.get("/", response=list[ClientOut], auth=staff_only(*Role))
def search(
    request: HttpRequest, q: str = "", limit: Annotated[int, Field(ge=1, le=200)] = 50
) -> list[dict[str, Any]]:
    """Staff search clients by name, company or e-mail."""
    return [_out(c) for c in queries.search_clients(q, limit=min(limit, 200))]


@router.get("/me", response=ClientOut, auth=session)
@domain_errors
def me(request: HttpRequest) -> Any:
    """The signed-in client's own record."""
    client_id = queries.client_id_for_user(request.user)
    if client_id is None:
        raise NotFound("You are not a client.", code="client_not_found")
    return _out(queries.get_client(client_id))


@router.post("/individuals", response={201: ClientOut}, auth=staff_only(*STAFF_WRITERS))
@domain_errors
def register_individual(request: HttpRequest, payload: IndividualIn) -> Any:
    """Register a person on a client's behalf."""
    client = services.register_individual(**payload.dict(), by=request.user)
    return Status(201, _out(queries.get_client(client.pk)))


@router.post("/companies", response={201: ClientOut}, auth=staff_only(*STAFF_WRITERS))
@domain_errors
def register_corporate(request: HttpRequest, payload: CorporateIn) -> Any:
    """Register a company."""
    client = services.register_corporate(**payload.dict(), by=request.user)
    return Status(201, _out(queries.get_client(client.pk)))


@router.get("/{client_id}", response=ClientOut, auth=session)
@domain_errors
def read(request: HttpRequest, client_id: UUID) -> Any:
    """One client (staff, or the client themself)."""
    return _out(visible_client(request, client_id))


@router.patch("/{client_id}/contact", response=ClientOut, auth=staff_only(*STAFF_WRITERS))
@domain_errors
def change_contact(request: HttpRequest, client_id: UUID, payload: ContactChangeIn) -> Any:
    """Change contact data (audited, with a reason)."""
    services.update_contact(client_id, payload.changes, by=request.user, reason=payload.reason)
    return _out(queries.get_client(client_id))


@router.get("/{client_id}/timeline", response=list[TimelineOut], auth=session)
@domain_errors
def read_timeline(
    request: HttpRequest, client_id: UUID, limit: Annotated[int, Field(ge=1, le=500)] = 100
) -> Any:
    """The client's timeline, newest first."""
    visible_client(request, client_id)
    return [t.__dict__ for t in queries.timeline(client_id, limit=min(limit, 500))]


@router.get("/{client_id}/logins", response=list[LoginOut], auth=session)
@domain_errors
def read_logins(request: HttpRequest, client_id: UUID) -> Any:
    """The client's platform logins."""
    visible_client(request, client_id)
    return [login.__dict__ for login in queries.logins_of(client_id)]


@router.post(
    "/{client_id}/logins", response={201: LoginOut}, auth=staff_only(Role.DEALING, Role.SUPPORT)
)
@domain_errors
def link_login(request: HttpRequest, client_id: UUID, payload: LoginIn) -> Any:
    """Link a platform login to the client."""
    row = services.link_platform_login(client_id, **payload.dict(), by=request.user)
    return Status(201, queries.client_for_login(row.server, row.login).__dict__)
