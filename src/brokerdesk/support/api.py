"""The support API, mounted at /api/v1/support/.

A client (session) lists, opens and answers their own tickets and reads the public thread;
staff read the queues of their roles and work tickets there (the services check the role
again); the auditor reads every queue and changes nothing. ``POST /inbound-email`` takes a
raw RFC 822 message signed by the mail relay (see ``support.inbound``), with no session.
"""

from datetime import datetime
from typing import Any
from uuid import UUID

from django.http import HttpRequest
from ninja import Query, Router, Schema, Status

from brokerdesk.clients.queries import client_id_for_user
from brokerdesk.core import clock
from brokerdesk.core.errors import PermissionDenied
from brokerdesk.staff.api import SessionUser, domain_errors, staff_only
from brokerdesk.staff.roles import Role, is_staff_member
from brokerdesk.support import inbound, queries, services, states

router = Router(tags=["support"])
session = SessionUser()
READERS = staff_only(*states.QUEUE_ROLES.values(), *states.READ_ONLY_ROLES)


class TicketOut(Schema):
    id: UUID
    reference: str
    client_id: UUID | None
    category: str
    queue: str
    priority: str
    status: str
    subject: str
    source: str
    assignee_id: int | None
    created_at: datetime
    updated_at: datetime
    first_response_due: datetime
    resolution_due: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None
    links: dict[str, str]
    first_response_breached: bool
    resolution_breached: bool
    sla_badge: str


class AttachmentOut(Schema):
    id: UUID
    filename: str
    content_type: str
    size: int


class MessageOut(Schema):
    id: UUID
    kind: str
    author_name: str
    text: str
    source: str
    created_at: datetime
    attachments: list[AttachmentOut]


class ChangeOut(Schema):
    action: str
    from_value: str
    to_value: str
    reason: str
    actor: str
    occurred_at: datetime


class ThreadOut(Schema):
    ticket: TicketOut
    messages: list[MessageOut]
    tags: list[str] = []
    history: list[ChangeOut] = []


class TicketIn(Schema):
    category: str
    subject: str
    body: str
    client_id: UUID | None = None  # staff only; a client always opens for themselves
    requester_email: str = ""
    queue: str | None = None
    priority: str | None = None
    links: dict[str, str] = {}
    idempotency_key: str | None = None


class ReplyIn(Schema):
    body: str
    then_status: str | None = None  # staff: pending_client or resolved


class NoteIn(Schema):
    body: str


class StatusIn(Schema):
    to_status: str
    reason: str = ""


class EscalateIn(Schema):
    to_queue: str
    reason: str


class AssignIn(Schema):
    assignee_id: int | None


class PriorityIn(Schema):
    priority: str
    reason: str = ""


class TagsIn(Schema):
    add: list[str] = []
    remove: list[str] = []


class TagsOut(Schema):
    tags: list[str]


class QueueOut(Schema):
    queue: str
    open: int
    unassigned: int
    breached: int
    due_soon: int


class FcrOut(Schema):
    resolved: int
    first_contact: int
    rate: float | None
    category: str | None


class FcrReportOut(Schema):
    overall: FcrOut
    by_category: list[FcrOut]


class SlaOut(Schema):
    queue: str
    tickets: int
    first_response_measured: int
    first_response_met: int
    first_response_rate: float | None
    resolution_measured: int
    resolution_met: int
    resolution_rate: float | None


class SlaTargetOut(Schema):
    priority: str
    first_response_minutes: int
    resolution_minutes: int


class SlaTargetIn(Schema):
    first_response_minutes: int
    resolution_minutes: int


class InboundOut(Schema):
    reference: str
    ticket_id: UUID
    created: bool
    duplicate: bool
    dropped_attachments: int


class ListFilters(Schema):
    queue: str | None = None
    status: str | None = None
    priority: str | None = None
    category: str | None = None
    tag: str | None = None
    unassigned: bool = False
    breached: bool = False
    q: str = ""


def _own_client(request: HttpRequest) -> UUID:
    client_id = client_id_for_user(request.user)
    if client_id is None:
        raise PermissionDenied("Only clients and staff use support.", code="forbidden")
    return client_id


def _ticket(view: queries.TicketView) -> dict[str, Any]:
    return dict(view.__dict__)


def _messages(messages: list[queries.MessageView]) -> list[dict[str, Any]]:
    return [{**m.__dict__, "attachments": [a.__dict__ for a in m.attachments]} for m in messages]


@router.get("/tickets", response=list[TicketOut], auth=session)
@domain_errors
def list_tickets(request: HttpRequest, filters: Query[ListFilters]) -> Any:
    """A client's own tickets; for staff, the tickets of the queues they may read."""
    if is_staff_member(request.user):
        found = queries.staff_tickets(
            request.user,
            queries.TicketFilters(
                queue=filters.queue,
                status=filters.status,
                priority=filters.priority,
                category=filters.category,
                tag=filters.tag,
                unassigned=filters.unassigned,
                breached=filters.breached,
                text=filters.q,
            ),
        )
        return [_ticket(t) for t in found]
    return [_ticket(t) for t in queries.tickets_of(_own_client(request))]


@router.post("/tickets", response={201: TicketOut}, auth=session)
@domain_errors
def open_ticket(request: HttpRequest, payload: TicketIn) -> Any:
    """Open a ticket: a client for themselves, staff for a client or an e-mail address."""
    staff = is_staff_member(request.user)
    view = services.open_ticket(
        client_id=payload.client_id if staff else _own_client(request),
        category=payload.category,
        subject=payload.subject,
        body=payload.body,
        source="staff" if staff else "api",
        by=request.user,
        queue=payload.queue,
        priority=payload.priority,
        links=payload.links,
        idempotency_key=payload.idempotency_key,
        requester_email=payload.requester_email if staff else "",
    )
    return Status(201, _ticket(view))


@router.get("/tickets/{ticket_id}", response=ThreadOut, auth=session)
@domain_errors
def read_ticket(request: HttpRequest, ticket_id: UUID) -> Any:
    """The thread: staff see notes, tags and history; a client only the public messages."""
    if is_staff_member(request.user):
        detail = queries.staff_ticket(request.user, ticket_id)
        return {
            "ticket": _ticket(detail.ticket),
            "messages": _messages(detail.messages),
            "tags": detail.tags,
            "history": [c.__dict__ for c in detail.history],
        }
    thread = queries.client_thread(_own_client(request), ticket_id)
    return {"ticket": _ticket(thread.ticket), "messages": _messages(thread.messages)}


@router.post("/tickets/{ticket_id}/replies", response=TicketOut, auth=session)
@domain_errors
def reply(request: HttpRequest, ticket_id: UUID, payload: ReplyIn) -> Any:
    """Answer on a ticket (a client on their own; staff in their queues)."""
    if is_staff_member(request.user):
        view = services.staff_reply(
            ticket_id, body=payload.body, by=request.user, then_status=payload.then_status
        )
    else:
        view = services.client_reply(
            ticket_id,
            client_id=_own_client(request),
            body=payload.body,
            by=request.user,
            source="api",
        )
    return _ticket(view)


@router.post("/tickets/{ticket_id}/notes", response=TicketOut, auth=READERS)
@domain_errors
def note(request: HttpRequest, ticket_id: UUID, payload: NoteIn) -> Any:
    """Add an internal note (never shown to the client)."""
    return _ticket(services.add_note(ticket_id, body=payload.body, by=request.user))


@router.post("/tickets/{ticket_id}/status", response=TicketOut, auth=READERS)
@domain_errors
def status(request: HttpRequest, ticket_id: UUID, payload: StatusIn) -> Any:
    """Move the ticket along its status table."""
    view = services.change_status(
        ticket_id, payload.to_status, by=request.user, reason=payload.reason
    )
    return _ticket(view)


@router.post("/tickets/{ticket_id}/escalate", response=TicketOut, auth=READERS)
@domain_errors
def escalate(request: HttpRequest, ticket_id: UUID, payload: EscalateIn) -> Any:
    """Escalate to another queue with a reason (audited)."""
    view = services.escalate(
        ticket_id, to_queue=payload.to_queue, reason=payload.reason, by=request.user
    )
    return _ticket(view)


@router.post("/tickets/{ticket_id}/assign", response=TicketOut, auth=READERS)
@domain_errors
def assign(request: HttpRequest, ticket_id: UUID, payload: AssignIn) -> Any:
    """Assign to a staff member of the ticket's queue (null: unassign)."""
    return _ticket(services.assign(ticket_id, assignee_id=payload.assignee_id, by=request.user))


@router.post("/tickets/{ticket_id}/priority", response=TicketOut, auth=READERS)
@domain_errors
def priority(request: HttpRequest, ticket_id: UUID, payload: PriorityIn) -> Any:
    """Change the priority (the SLA deadlines follow)."""
    view = services.set_priority(
        ticket_id, payload.priority, by=request.user, reason=payload.reason
    )
    return _ticket(view)


@router.post("/tickets/{ticket_id}/tags", response=TagsOut, auth=READERS)
@domain_errors
def tags(request: HttpRequest, ticket_id: UUID, payload: TagsIn) -> Any:
    """Add and remove internal tags."""
    return {
        "tags": services.tag_ticket(
            ticket_id, add=payload.add, remove=payload.remove, by=request.user
        )
    }


@router.get("/queues", response=list[QueueOut], auth=READERS)
@domain_errors
def queues(request: HttpRequest) -> Any:
    """Workload of each queue the caller may read."""
    return [q.__dict__ for q in queries.queue_counts(request.user)]


@router.get(
    "/figures/first-contact-resolution",
    response=FcrReportOut,
    auth=staff_only(Role.SUPPORT, Role.AUDITOR),
)
@domain_errors
def fcr(request: HttpRequest, since: datetime | None = None, until: datetime | None = None) -> Any:
    """First-contact resolution overall and per category."""
    return {
        "overall": queries.first_contact_resolution(since=since, until=until).__dict__,
        "by_category": [f.__dict__ for f in queries.fcr_by_category(since=since, until=until)],
    }


@router.get("/figures/sla", response=list[SlaOut], auth=staff_only(Role.SUPPORT, Role.AUDITOR))
@domain_errors
def sla(request: HttpRequest, since: datetime | None = None, until: datetime | None = None) -> Any:
    """SLA attainment by queue."""
    return [
        {
            **a.__dict__,
            "first_response_rate": a.first_response_rate,
            "resolution_rate": a.resolution_rate,
        }
        for a in queries.sla_attainment(since=since, until=until)
    ]


@router.get("/sla-targets", response=list[SlaTargetOut], auth=READERS)
@domain_errors
def sla_targets(request: HttpRequest) -> Any:
    """The SLA targets of every priority."""
    return [t.__dict__ for t in queries.sla_targets()]


@router.put("/sla-targets/{priority}", response=SlaTargetOut, auth=staff_only(Role.ADMIN))
@domain_errors
def set_sla_target(request: HttpRequest, priority: str, payload: SlaTargetIn) -> Any:
    """Set the SLA targets of a priority (admin)."""
    services.set_sla_target(
        priority,
        first_response_minutes=payload.first_response_minutes,
        resolution_minutes=payload.resolution_minutes,
        by=request.user,
    )
    return queries.sla_target(priority).__dict__


def _raw_body(request: HttpRequest) -> bytes:
    """The request body, read from the stream up to the e-mail limit (an e-mail with its
    attachments may be larger than Django's in-memory limit for form posts)."""
    if getattr(request, "_read_started", False):
        return request.body
    return request.read(inbound.MAX_EMAIL_BYTES + 1)


@router.post("/inbound-email", response=InboundOut, auth=None)
@domain_errors
def inbound_email(request: HttpRequest) -> Any:
    """A raw e-mail from the mail relay, signed with the shared secret (HMAC-SHA256)."""
    raw = _raw_body(request)
    inbound.verify_signature(
        raw,
        request.headers.get("X-Support-Timestamp"),
        request.headers.get("X-Support-Signature"),
        secret=inbound.inbound_secret(),
        now=clock.now(),
    )
    result = services.ingest_email(raw)
    return {
        "reference": result.ticket.reference,
        "ticket_id": result.ticket.id,
        "created": result.created,
        "duplicate": result.duplicate,
        "dropped_attachments": result.dropped,
    }
