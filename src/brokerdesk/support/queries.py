"""Read side of support: tickets for the client, the staff queues, SLA and first-contact figures.

Two views of a ticket exist on purpose. A client reads ``tickets_of`` and ``client_thread``:
public messages only (never internal notes, tags or history). Staff read ``staff_tickets``,
``queue_counts`` and ``staff_ticket``, limited to the queues their roles work (admin and
auditor see every queue). SLA state is computed from the injectable clock (``core.clock``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Case, Count, F, Q, QuerySet, When

from brokerdesk.core import clock
from brokerdesk.core.errors import NotFound
from brokerdesk.support import states
from brokerdesk.support.models import (
    SlaTarget,
    Ticket,
    TicketAttachment,
    TicketChange,
    TicketMessage,
)
from brokerdesk.support.wording import system_text

DUE_SOON_FRACTION = 0.2  # an SLA clock is "due soon" in the last fifth of its time


@dataclass(frozen=True)
class TicketView:
    """A ticket as the client, the staff screens and other modules see it (no notes, no tags)."""

    id: UUID
    reference: str
    client_id: UUID | None
    requester_email: str
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
    closed_at: datetime | None
    links: dict[str, str]
    first_response_breached: bool
    resolution_breached: bool
    sla_badge: str  # met, on_track, due_soon or breached

    @property
    def is_open(self) -> bool:
        """True while the ticket is new, open or waiting for the client."""
        return self.status in states.OPEN_STATUSES


@dataclass(frozen=True)
class AttachmentView:
    """An attachment's name, type and size (its content is fetched separately)."""

    id: UUID
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True)
class MessageView:
    """One message of a thread; ``text`` is the body, or the system message in the reader's
    language."""

    id: UUID
    kind: str  # client, staff, system or note (note: staff only)
    author: str
    author_name: str
    text: str
    source: str
    created_at: datetime
    attachments: tuple[AttachmentView, ...] = ()
    dropped_attachments: tuple[dict[str, Any], ...] = ()

    @property
    def internal(self) -> bool:
        """True for an internal note."""
        return self.kind == "note"


@dataclass(frozen=True)
class ChangeView:
    """One entry of a ticket's history."""

    action: str
    from_value: str
    to_value: str
    reason: str
    actor: str
    occurred_at: datetime


@dataclass(frozen=True)
class LinkView:
    """A linked record and, for payments, its last known status."""

    kind: str
    target: str
    last_status: str
    last_status_at: datetime | None


@dataclass(frozen=True)
class ClientThread:
    """A ticket as its client sees it: the public thread only."""

    ticket: TicketView
    messages: list[MessageView]


@dataclass(frozen=True)
class StaffTicket:
    """A ticket as staff see it: the whole thread with internal notes, tags, links, history."""

    ticket: TicketView
    messages: list[MessageView]
    tags: list[str]
    links: list[LinkView]
    history: list[ChangeView]
    can_work: bool  # the viewer may change it (not read-only)


@dataclass(frozen=True)
class QueueCount:
    """One queue's workload for the queue cards."""

    queue: str
    open: int
    unassigned: int
    breached: int
    due_soon: int


@dataclass(frozen=True)
class FcrFigure:
    """First-contact resolution: resolved tickets that needed a single staff reply."""

    resolved: int
    first_contact: int
    rate: float | None  # first_contact / resolved, None when nothing was resolved
    category: str | None = None


@dataclass(frozen=True)
class SlaAttainment:
    """Per queue: how many measured tickets met their first-response and resolution targets."""

    queue: str
    tickets: int
    first_response_measured: int
    first_response_met: int
    resolution_measured: int
    resolution_met: int

    @property
    def first_response_rate(self) -> float | None:
        """Share of measured first responses in time (None when nothing was measured)."""
        return _rate(self.first_response_met, self.first_response_measured)

    @property
    def resolution_rate(self) -> float | None:
        """Share of measured resolutions in time (None when nothing was measured)."""
        return _rate(self.resolution_met, self.resolution_measured)


@dataclass(frozen=True)
class SlaTargetView:
    """The targets of one priority, in minutes."""

    priority: str
    first_response_minutes: int
    resolution_minutes: int


@dataclass(frozen=True)
class TicketFilters:
    """Filters of the staff ticket list (None or empty: no filter)."""

    queue: str | None = None
    status: str | None = None  # a status, or "active" for new/open/pending client
    priority: str | None = None
    category: str | None = None
    assignee_id: int | None = None
    unassigned: bool = False
    tag: str | None = None
    breached: bool = False
    text: str = ""
    client_id: UUID | None = None


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


# -- SLA -----------------------------------------------------------------------------------


def sla_targets() -> list[SlaTargetView]:
    """The SLA targets of every priority (stored rows over the defaults), urgent first."""
    stored = {t.priority: t for t in SlaTarget.objects.all()}
    out = []
    for priority in sorted(states.PRIORITIES, key=states.PRIORITY_ORDER.__getitem__):
        row = stored.get(priority)
        first, resolution = (
            (row.first_response_minutes, row.resolution_minutes)
            if row
            else states.DEFAULT_SLA[priority]
        )
        out.append(SlaTargetView(priority, first, resolution))
    return out


def sla_target(priority: str) -> SlaTargetView:
    """The SLA targets of ``priority``."""
    return next(t for t in sla_targets() if t.priority == priority)


def _badge(
    due: datetime, done_at: datetime | None, started: datetime, now: datetime
) -> tuple[bool, str]:
    """(breached, badge) of one SLA clock that started at ``started``."""
    if done_at is not None:
        return done_at > due, "met" if done_at <= due else "breached"
    if now > due:
        return True, "breached"
    remaining = (due - now).total_seconds()
    span = max((due - started).total_seconds(), 1.0)
    return False, "due_soon" if remaining <= span * DUE_SOON_FRACTION else "on_track"


def ticket_view(ticket: Ticket, *, now: datetime | None = None) -> TicketView:
    """The view of a ticket row, SLA state as of ``now`` (the clock by default)."""
    now = now or clock.now()
    fr_breached, fr_badge = _badge(
        ticket.first_response_due, ticket.first_response_at, ticket.created_at, now
    )
    res_done = ticket.resolved_at or ticket.closed_at
    res_breached, res_badge = _badge(ticket.resolution_due, res_done, ticket.created_at, now)
    if fr_breached or res_breached:
        badge = "breached"
    elif ticket.status not in states.OPEN_STATUSES:
        badge = "met"
    elif "due_soon" in (fr_badge, res_badge) and not (
        fr_badge == "met" and res_badge == "on_track"
    ):
        badge = "due_soon"
    else:
        badge = "on_track"
    links = getattr(ticket, "_prefetched_objects_cache", {}).get("links")
    link_rows = links if links is not None else ticket.links.all()
    return TicketView(
        id=ticket.id,
        reference=ticket.reference,
        client_id=ticket.client_id,
        requester_email=ticket.requester_email,
        category=ticket.category,
        queue=ticket.queue,
        priority=ticket.priority,
        status=ticket.status,
        subject=ticket.subject,
        source=ticket.source,
        assignee_id=ticket.assignee_id,
        created_at=ticket.created_at,
        updated_at=ticket.updated_at,
        first_response_due=ticket.first_response_due,
        resolution_due=ticket.resolution_due,
        first_response_at=ticket.first_response_at,
        resolved_at=ticket.resolved_at,
        closed_at=ticket.closed_at,
        links={link.kind: link.target for link in link_rows},
        first_response_breached=fr_breached,
        resolution_breached=res_breached,
        sla_badge=badge,
    )


# -- the client's side ------------------------------------------------------------------------


def tickets_of(client_id: UUID | str) -> list[TicketView]:
    """The client's tickets, newest first (safe to show the client: no notes, no tags)."""
    now = clock.now()
    rows = (
        Ticket.objects.filter(client_id=client_id)
        .prefetch_related("links")
        .order_by("-created_at", "-id")
    )
    return [ticket_view(t, now=now) for t in rows]


def _get(ticket_id: UUID | str) -> Ticket:
    try:
        return Ticket.objects.prefetch_related("links").get(pk=ticket_id)
    except (Ticket.DoesNotExist, ValueError, DjangoValidationError):
        raise NotFound("No such ticket.", code="ticket_not_found", field="ticket_id") from None


def client_thread(client_id: UUID | str, ticket_id: UUID | str) -> ClientThread:
    """One of the client's tickets with its public messages; another's ticket is ``NotFound``."""
    ticket = _get(ticket_id)
    if ticket.client_id is None or str(ticket.client_id) != str(client_id):
        raise NotFound("No such ticket.", code="ticket_not_found", field="ticket_id")
    messages = _messages(ticket, include_notes=False)
    return ClientThread(ticket_view(ticket), messages)


def _messages(ticket: Ticket, *, include_notes: bool) -> list[MessageView]:
    qs = ticket.messages.prefetch_related("attachments").order_by("created_at", "id")
    if not include_notes:
        qs = qs.exclude(kind="note")
    return [_message_view(m) for m in qs]


def _message_view(m: TicketMessage) -> MessageView:
    text = system_text(m.system_code, m.system_params) if m.system_code else m.body
    return MessageView(
        id=m.id,
        kind=m.kind,
        author=m.author,
        author_name=m.author_name,
        text=text,
        source=m.source,
        created_at=m.created_at,
        attachments=tuple(
            AttachmentView(a.id, a.filename, a.content_type, a.size) for a in m.attachments.all()
        ),
        dropped_attachments=tuple(m.dropped_attachments or ()),
    )


def client_attachment(
    client_id: UUID | str, attachment_id: UUID | str
) -> tuple[AttachmentView, bytes]:
    """An attachment of a public message on the client's own ticket, or ``NotFound``."""
    row = _attachment(attachment_id)
    if row.message.kind == "note" or str(row.message.ticket.client_id) != str(client_id):
        raise NotFound("No such attachment.", code="attachment_not_found", field="attachment_id")
    return AttachmentView(row.id, row.filename, row.content_type, row.size), bytes(row.content)


def _attachment(attachment_id: UUID | str) -> TicketAttachment:
    try:
        return TicketAttachment.objects.select_related("message__ticket").get(pk=attachment_id)
    except (TicketAttachment.DoesNotExist, ValueError, DjangoValidationError):
        raise NotFound(
            "No such attachment.", code="attachment_not_found", field="attachment_id"
        ) from None


# -- the staff side ---------------------------------------------------------------------------


def readable_queues(user: Any) -> list[str]:
    """The queues ``user`` may read: those of their roles; every queue for admin and auditor."""
    from brokerdesk.staff.roles import has_role

    if has_role(user, *states.READ_ONLY_ROLES):
        return list(states.QUEUES)
    return [q for q, role in states.QUEUE_ROLES.items() if has_role(user, role)]


def workable_queues(user: Any) -> list[str]:
    """The queues ``user`` may change tickets in (admin: all; auditor: none)."""
    from brokerdesk.staff.roles import has_role

    return [q for q, role in states.QUEUE_ROLES.items() if has_role(user, role)]


def _visible(user: Any) -> QuerySet[Ticket]:
    return Ticket.objects.filter(queue__in=readable_queues(user))


def staff_tickets(
    user: Any, filters: TicketFilters | None = None, *, limit: int = 200
) -> list[TicketView]:
    """Tickets in the queues ``user`` may read, filtered, urgent and oldest first."""
    f = filters or TicketFilters()
    qs = _visible(user).prefetch_related("links")
    if f.queue:
        qs = qs.filter(queue=f.queue)
    if f.status == "active":
        qs = qs.filter(status__in=states.OPEN_STATUSES)
    elif f.status:
        qs = qs.filter(status=f.status)
    if f.priority:
        qs = qs.filter(priority=f.priority)
    if f.category:
        qs = qs.filter(category=f.category)
    if f.unassigned:
        qs = qs.filter(assignee_id__isnull=True)
    elif f.assignee_id is not None:
        qs = qs.filter(assignee_id=f.assignee_id)
    if f.tag:
        qs = qs.filter(tags__name=f.tag.strip().lower())
    if f.client_id:
        qs = qs.filter(client_id=f.client_id)
    if f.text:
        qs = qs.filter(
            Q(subject__icontains=f.text)
            | Q(reference__iexact=f.text.strip())
            | Q(requester_email__icontains=f.text)
        )
    now = clock.now()
    if f.breached:
        qs = qs.filter(_breached_q(now))
    rows = qs.annotate(
        closed_rank=Case(When(status__in=states.OPEN_STATUSES, then=0), default=1),
        priority_rank=Case(
            *(When(priority=p, then=rank) for p, rank in states.PRIORITY_ORDER.items()),
            default=9,
        ),
    ).order_by("closed_rank", "priority_rank", "created_at", "id")[:limit]
    return [ticket_view(t, now=now) for t in rows]


def _breached_q(now: datetime) -> Q:
    """Active tickets whose first response or resolution is late (done late, or due and not
    done)."""
    first = Q(first_response_at__isnull=True, first_response_due__lt=now) | Q(
        first_response_at__gt=F("first_response_due")
    )
    resolution = Q(resolved_at__isnull=True, closed_at__isnull=True, resolution_due__lt=now)
    return (first | resolution) & Q(status__in=states.OPEN_STATUSES)


def queue_counts(user: Any) -> list[QueueCount]:
    """Open, unassigned, breached and due-soon counts of each queue ``user`` may read."""
    now = clock.now()
    counts = []
    for queue in readable_queues(user):
        active = Ticket.objects.filter(queue=queue, status__in=states.OPEN_STATUSES)
        views = [ticket_view(t, now=now) for t in active.prefetch_related("links")]
        counts.append(
            QueueCount(
                queue=queue,
                open=len(views),
                unassigned=sum(1 for v in views if v.assignee_id is None),
                breached=sum(1 for v in views if v.sla_badge == "breached"),
                due_soon=sum(1 for v in views if v.sla_badge == "due_soon"),
            )
        )
    return counts


def staff_ticket(user: Any, ticket_id: UUID | str) -> StaffTicket:
    """A ticket with its whole thread, for staff who may read its queue (else ``NotFound``)."""
    ticket = _get(ticket_id)
    if ticket.queue not in readable_queues(user):
        raise NotFound("No such ticket.", code="ticket_not_found", field="ticket_id")
    return StaffTicket(
        ticket=ticket_view(ticket),
        messages=_messages(ticket, include_notes=True),
        tags=sorted(ticket.tags.values_list("name", flat=True)),
        links=[
            LinkView(link.kind, link.target, link.last_status, link.last_status_at)
            for link in ticket.links.all()
        ],
        history=[
            ChangeView(c.action, c.from_value, c.to_value, c.reason, c.actor, c.occurred_at)
            for c in TicketChange.objects.filter(ticket=ticket).order_by("occurred_at", "id")
        ],
        can_work=ticket.queue in workable_queues(user),
    )


def staff_attachment(user: Any, attachment_id: UUID | str) -> tuple[AttachmentView, bytes]:
    """An attachment of a ticket in a queue ``user`` may read, or ``NotFound``."""
    row = _attachment(attachment_id)
    if row.message.ticket.queue not in readable_queues(user):
        raise NotFound("No such attachment.", code="attachment_not_found", field="attachment_id")
    return AttachmentView(row.id, row.filename, row.content_type, row.size), bytes(row.content)


def tickets_linked_to(kind: str, targets: Iterable[str]) -> list[UUID]:
    """Ids of the tickets linked to any of ``targets`` of ``kind`` (a payment id or reference)."""
    wanted = [t for t in targets if t]
    if not wanted:
        return []
    return list(
        Ticket.objects.filter(links__kind=kind, links__target__in=wanted)
        .order_by("id")
        .values_list("id", flat=True)
        .distinct()
    )


# -- figures ----------------------------------------------------------------------------------


def first_contact_resolution(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    queue: str | None = None,
    category: str | None = None,
) -> FcrFigure:
    """Resolved tickets (resolved or closed in the period) that took exactly one staff reply
    and were never reopened, out of all resolved tickets."""
    qs = _resolved(since, until)
    if queue:
        qs = qs.filter(queue=queue)
    if category:
        qs = qs.filter(category=category)
    resolved = qs.count()
    first = qs.filter(staff_reply_count=1, reopened_count=0).count()
    return FcrFigure(resolved, first, _rate(first, resolved), category)


def fcr_by_category(
    *, since: datetime | None = None, until: datetime | None = None
) -> list[FcrFigure]:
    """The first-contact-resolution figure of each category (the targets are per type)."""
    rows = {
        r["category"]: r
        for r in _resolved(since, until)
        .values("category")
        .annotate(
            resolved=Count("id"),
            first=Count("id", filter=Q(staff_reply_count=1, reopened_count=0)),
        )
    }
    out = []
    for category in states.CATEGORIES:
        r = rows.get(category, {"resolved": 0, "first": 0})
        out.append(FcrFigure(r["resolved"], r["first"], _rate(r["first"], r["resolved"]), category))
    return out


def _resolved(since: datetime | None, until: datetime | None) -> QuerySet[Ticket]:
    qs = Ticket.objects.filter(status__in=("resolved", "closed"), resolved_at__isnull=False)
    if since:
        qs = qs.filter(resolved_at__gte=since)
    if until:
        qs = qs.filter(resolved_at__lt=until)
    return qs


def sla_attainment(
    *, since: datetime | None = None, until: datetime | None = None
) -> list[SlaAttainment]:
    """Per queue, of the tickets opened in the period: first responses and resolutions that
    met their targets, out of those measured (done, or not done and already past due)."""
    now = clock.now()
    qs = Ticket.objects.all()
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lt=until)
    out = []
    for queue in states.QUEUES:
        rows = list(
            qs.filter(queue=queue).values_list(
                "first_response_due", "first_response_at", "resolution_due", "resolved_at"
            )
        )
        fr = [(due, at) for due, at, _, _ in rows if at is not None or due < now]
        res = [(due, at) for _, _, due, at in rows if at is not None or due < now]
        out.append(
            SlaAttainment(
                queue=queue,
                tickets=len(rows),
                first_response_measured=len(fr),
                first_response_met=sum(1 for due, at in fr if at is not None and at <= due),
                resolution_measured=len(res),
                resolution_met=sum(1 for due, at in res if at is not None and at <= due),
            )
        )
    return out


def staff_names(user_ids: Iterable[int]) -> dict[int, str]:
    """Display names of staff users by pk (for the assignee column)."""
    from django.contrib.auth import get_user_model

    ids = {i for i in user_ids if i is not None}
    if not ids:
        return {}
    return {
        u.pk: (u.get_full_name() or u.email or u.get_username())
        for u in get_user_model().objects.filter(pk__in=ids)
    }


def assignable_staff(queue: str) -> list[tuple[int, str]]:
    """(pk, name) of the users who may work ``queue`` (its role, or admin), by name."""
    from django.contrib.auth import get_user_model

    role = states.QUEUE_ROLES[queue]
    users = (
        get_user_model()
        .objects.filter(
            Q(groups__name__in=[role.value, "admin"]) | Q(is_superuser=True), is_active=True
        )
        .distinct()
    )
    return sorted(
        ((u.pk, u.get_full_name() or u.email or u.get_username()) for u in users),
        key=lambda pair: pair[1].lower(),
    )


def key_used(idempotency_key: str) -> bool:
    """True when a ticket was already opened with ``idempotency_key``."""
    return Ticket.objects.filter(idempotency_key=idempotency_key).exists()


def client_for_email(address: str) -> UUID | None:
    """The client whose e-mail address is ``address`` (case-insensitive), if any."""
    from brokerdesk.clients.queries import search_clients

    wanted = (address or "").strip().lower()
    if not wanted:
        return None
    for client in search_clients(wanted, limit=5):
        if client.email.strip().lower() == wanted:
            return client.id
    return None
