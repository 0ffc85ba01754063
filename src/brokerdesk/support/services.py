"""Commands of support: the only functions that write its tables.

Each command runs in one transaction: it locks the ticket, checks who may do it and whether
the status machine allows it (``states``), writes its rows, the ticket's history, an audit
entry (staff actions) and its outbox event (``ticket.opened`` / ``ticket.updated``) together;
a broken rule raises a domain error and changes nothing.

``by`` is a signed-in user or a system actor label (``"system:payments"``,
``"email:someone@example.com"``). A client user may only open and reply on their own tickets;
staff work the queues of their roles (``states.QUEUE_ROLES``; admin all); the auditor reads
and never writes.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from smtplib import SMTPException
from typing import Any
from uuid import UUID

import structlog
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction

from brokerdesk.clients import queries as client_queries
from brokerdesk.core import audit, clock
from brokerdesk.core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from brokerdesk.core.events import emit
from brokerdesk.staff.roles import Role, actor_label, has_role, is_staff_member
from brokerdesk.support import inbound, states
from brokerdesk.support.events import TicketOpened, TicketUpdated
from brokerdesk.support.models import (
    SlaTarget,
    Ticket,
    TicketAttachment,
    TicketChange,
    TicketLink,
    TicketMessage,
    TicketTag,
)
from brokerdesk.support.queries import (
    TicketView,
    client_for_email,
    sla_target,
    ticket_view,
    tickets_linked_to,
)
from brokerdesk.support.wording import SYSTEM_TEXTS

log = structlog.get_logger(__name__)

REFERENCE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O or 1/I: read aloud safely
MAX_SUBJECT = 200
MAX_BODY = 20_000
AUTO_CLOSE_AFTER = timedelta(days=7)


@dataclass(frozen=True)
class InboundResult:
    """What an inbound e-mail did: the ticket, whether it is new, whether it was a repeat."""

    ticket: TicketView
    created: bool
    duplicate: bool
    dropped: int


# -- who is acting ----------------------------------------------------------------------------


def _is_system(by: Any) -> bool:
    return isinstance(by, str)


def _display_name(by: Any) -> str:
    if isinstance(by, str):
        return by.split(":", 1)[-1]
    full = getattr(by, "get_full_name", lambda: "")()
    return str(full or by.get_username())


def _client_name(client_id: UUID | str | None) -> str:
    if client_id is None:
        return ""
    try:
        return client_queries.get_client(client_id).display_name
    except NotFound:
        return ""


def _require_worker(by: Any, queue: str) -> None:
    """Staff who work ``queue`` (or admin), or a system actor; refuse anyone else."""
    actor_label(by)
    if _is_system(by):
        return
    role = states.QUEUE_ROLES[queue]
    if not has_role(by, role):
        raise PermissionDenied(
            f"Working the {queue} queue needs the role {role.value}.",
            code="role_required",
            field="queue",
            roles=role.value,
        )


def _require_staff_writer(by: Any) -> None:
    """Any staff role that works a queue (not the read-only auditor), or a system actor."""
    actor_label(by)
    if _is_system(by):
        return
    if not has_role(by, *states.QUEUE_ROLES.values()):
        raise PermissionDenied(
            "This needs a staff role that works a support queue.",
            code="role_required",
            field="by",
            roles=", ".join(r.value for r in states.QUEUE_ROLES.values()),
        )


def _client_of(by: Any) -> UUID | None:
    return None if _is_system(by) else client_queries.client_id_for_user(by)


# -- small helpers -----------------------------------------------------------------------------


def _locked(ticket_id: UUID | str) -> Ticket:
    try:
        return Ticket.objects.select_for_update().get(pk=ticket_id)
    except (Ticket.DoesNotExist, ValueError, DjangoValidationError):
        raise NotFound("No such ticket.", code="ticket_not_found", field="ticket_id") from None


def _new_reference() -> str:
    for _ in range(10):
        ref = "T-" + "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(8))
        if not Ticket.objects.filter(reference=ref).exists():
            return ref
    raise Conflict("Could not allocate a ticket reference.", code="reference_exhausted")


def _text(value: str, field: str, limit: int, *, required: bool = True) -> str:
    cleaned = (value or "").strip()
    if required and not cleaned:
        raise ValidationError(f"The {field} is required.", code="required", field=field)
    if len(cleaned) > limit:
        raise ValidationError(
            f"The {field} is longer than {limit} characters.", code="too_long", field=field
        )
    return cleaned


def _email(value: str) -> str:
    from django.core.validators import validate_email

    cleaned = (value or "").strip().lower()
    if cleaned:
        try:
            validate_email(cleaned)
        except DjangoValidationError:
            raise ValidationError(
                f"{value!r} is not an e-mail address.",
                code="invalid_email",
                field="requester_email",
            ) from None
    return cleaned


def _clean_links(links: Mapping[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for kind, target in (links or {}).items():
        states.check_choice(kind, states.LINK_KINDS, "link")
        value = str(target or "").strip()
        if not value or len(value) > 100:
            raise ValidationError(
                f"The {kind} link needs an id or reference of at most 100 characters.",
                code="invalid_link",
                field="links",
            )
        out[kind] = value
    return out


def _clean_tags(names: Iterable[str]) -> list[str]:
    tags = sorted({(n or "").strip().lower() for n in names if (n or "").strip()})
    for tag in tags:
        if len(tag) > 50 or not tag.replace("-", "").replace("_", "").isalnum():
            raise ValidationError(
                f"{tag!r} is not a tag (letters, digits, - and _; at most 50).",
                code="invalid_tag",
                field="tags",
            )
    return tags


def _change(
    ticket: Ticket, action: str, before: str, after: str, actor: str, reason: str = ""
) -> None:
    TicketChange.objects.create(
        ticket=ticket,
        action=action,
        from_value=before,
        to_value=after,
        reason=reason,
        actor=actor,
        occurred_at=clock.now(),
    )


def _set_status(ticket: Ticket, target: str, actor: str, reason: str = "") -> None:
    """Move ``ticket`` (locked) to ``target`` per the table, stamping the times it owns."""
    states.check_transition(ticket.status, target)
    now = clock.now()
    before = ticket.status
    if before == "resolved" and target == "open":
        ticket.reopened_count += 1
        ticket.resolved_at = None
    if target == "resolved":
        ticket.resolved_at = now
    if target == "closed":
        ticket.closed_at = now
    ticket.status = target
    _change(
        ticket,
        "reopened" if before == "resolved" and target == "open" else "status",
        before,
        target,
        actor,
        reason,
    )


def _emit_updated(ticket: Ticket, change: str, actor: str, *, visible: bool) -> None:
    emit(
        TicketUpdated(
            ticket_id=ticket.id,
            reference=ticket.reference,
            client_id=ticket.client_id,
            category=ticket.category,
            queue=ticket.queue,
            priority=ticket.priority,
            status=ticket.status,
            change=change,
            visible_to_client=visible,
            actor=actor,
        )
    )


def _audit(
    ticket: Ticket,
    action: str,
    actor: str,
    *,
    reason: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    audit.record(
        actor=actor,
        action=f"support.{action}",
        object_type="ticket",
        object_id=str(ticket.id),
        reason=reason,
        before=before,
        after=after,
    )


def _save(ticket: Ticket) -> None:
    ticket.updated_at = clock.now()
    ticket.save()


def _add_message(
    ticket: Ticket,
    *,
    kind: str,
    author: str,
    author_name: str,
    body: str = "",
    source: str,
    files: Sequence[inbound.IncomingFile] = (),
    dropped: Sequence[inbound.DroppedFile] = (),
    system_code: str = "",
    system_params: dict[str, Any] | None = None,
    dedupe_key: str | None = None,
    at: datetime | None = None,
) -> TicketMessage:
    message = TicketMessage.objects.create(
        ticket=ticket,
        kind=kind,
        author=author,
        author_name=author_name[:200],
        body=body,
        system_code=system_code,
        system_params=system_params or {},
        source=source,
        dedupe_key=dedupe_key,
        dropped_attachments=[d.__dict__ for d in dropped],
        created_at=at or clock.now(),
    )
    for kept, f in enumerate(files):
        reason = inbound.check_file(f.filename, f.content_type, f.content, already=kept)
        if reason:
            raise ValidationError(
                f"The file {f.filename!r} cannot be attached ({reason.replace('_', ' ')}).",
                code=f"attachment_{reason}",
                field="attachments",
            )
        TicketAttachment.objects.create(
            message=message,
            filename=f.filename[:200],
            content_type=f.content_type,
            size=len(f.content),
            sha256=hashlib.sha256(f.content).hexdigest(),
            content=f.content,
        )
    return message


# -- opening -----------------------------------------------------------------------------------


def open_ticket(
    *,
    client_id: UUID | None,
    category: str,
    subject: str,
    body: str,
    source: str,
    by: Any,
    queue: str | None = None,
    priority: str | None = None,
    links: dict[str, str] | None = None,
    idempotency_key: str | None = None,
    requester_email: str = "",
    attachments: Sequence[inbound.IncomingFile] = (),
) -> TicketView:
    """Open a ticket (portal, e-mail, staff, API or another module) and emit ``ticket.opened``.

    A client opens tickets only for themselves, in the default queue and priority; staff and
    system actors choose both. A repeated ``idempotency_key`` returns the first ticket.
    """
    states.check_choice(category, states.CATEGORIES, "category")
    states.check_choice(source, states.SOURCES, "source")
    queue = states.check_choice(queue or "support", states.QUEUES, "queue")
    priority = states.check_choice(priority or "normal", states.PRIORITIES, "priority")
    subject = _text(subject, "subject", MAX_SUBJECT)
    body = _text(body, "body", MAX_BODY)
    clean_links = _clean_links(links)
    requester_email = _email(requester_email)
    actor = actor_label(by)
    kind = _opener_kind(by, client_id, queue, priority)
    if client_id is not None and not client_queries.client_exists(client_id):
        raise NotFound("No such client.", code="client_not_found", field="client_id")
    if idempotency_key is not None:
        _text(idempotency_key, "idempotency_key", 200)
        existing = _by_key(idempotency_key, client_id)
        if existing is not None:
            return existing
    try:
        with transaction.atomic():
            return _create(
                client_id=client_id,
                requester_email=requester_email,
                category=category,
                queue=queue,
                priority=priority,
                subject=subject,
                body=body,
                source=source,
                actor=actor,
                author_kind=kind,
                author_name=_client_name(client_id) if kind == "client" else _display_name(by),
                links=clean_links,
                idempotency_key=idempotency_key,
                files=attachments,
            )
    except IntegrityError:
        if idempotency_key is None:
            raise
        again = _by_key(idempotency_key, client_id)
        if again is None:
            raise
        return again


def _opener_kind(by: Any, client_id: UUID | None, queue: str, priority: str) -> str:
    """``client`` or ``staff`` (system actors write as staff); refuse who may not open it."""
    actor_label(by)
    if _is_system(by):
        return "staff"
    if is_staff_member(by):
        _require_staff_writer(by)
        return "staff"
    own = _client_of(by)
    if own is None or client_id is None or str(own) != str(client_id):
        raise PermissionDenied(
            "A client may open tickets only for themselves.", code="forbidden", field="client_id"
        )
    if queue != "support" or priority != "normal":
        raise PermissionDenied(
            "The queue and priority of a ticket are set by staff.", code="forbidden", field="queue"
        )
    return "client"


def _by_key(key: str, client_id: UUID | None) -> TicketView | None:
    ticket = Ticket.objects.filter(idempotency_key=key).first()
    if ticket is None:
        return None
    if str(ticket.client_id) != str(client_id):
        raise Conflict(
            "This idempotency key was used for another ticket.",
            code="idempotency_conflict",
            field="idempotency_key",
        )
    return ticket_view(ticket)


def _create(
    *,
    client_id: UUID | None,
    requester_email: str,
    category: str,
    queue: str,
    priority: str,
    subject: str,
    body: str,
    source: str,
    actor: str,
    author_kind: str,
    author_name: str,
    links: dict[str, str],
    idempotency_key: str | None,
    files: Sequence[inbound.IncomingFile] = (),
    dropped: Sequence[inbound.DroppedFile] = (),
    dedupe_key: str | None = None,
) -> TicketView:
    now = clock.now()
    target = sla_target(priority)
    ticket = Ticket.objects.create(
        reference=_new_reference(),
        idempotency_key=idempotency_key,
        client_id=client_id,
        requester_email=requester_email,
        category=category,
        queue=queue,
        priority=priority,
        status="new",
        subject=subject,
        source=source,
        created_by=actor,
        created_at=now,
        updated_at=now,
        first_response_due=now + timedelta(minutes=target.first_response_minutes),
        resolution_due=now + timedelta(minutes=target.resolution_minutes),
    )
    for kind, value in links.items():
        TicketLink.objects.create(ticket=ticket, kind=kind, target=value)
    _add_message(
        ticket,
        kind=author_kind,
        author=actor,
        author_name=author_name,
        body=body,
        source=source,
        files=files,
        dropped=dropped,
        dedupe_key=dedupe_key,
    )
    _change(ticket, "opened", "", "new", actor)
    _audit(
        ticket,
        "ticket_opened",
        actor,
        after={
            "reference": ticket.reference,
            "queue": queue,
            "priority": priority,
            "category": category,
            "client_id": client_id,
            "source": source,
        },
    )
    emit(
        TicketOpened(
            ticket_id=ticket.id,
            reference=ticket.reference,
            client_id=client_id,
            category=category,
            queue=queue,
            priority=priority,
            status=ticket.status,
            subject=subject,
            source=source,
        )
    )
    return ticket_view(ticket)


# -- the thread --------------------------------------------------------------------------------


def client_reply(
    ticket_id: UUID | str,
    *,
    client_id: UUID | str,
    body: str,
    by: Any,
    source: str = "portal",
    attachments: Sequence[inbound.IncomingFile] = (),
) -> TicketView:
    """The client answers on their own ticket: waiting or resolved tickets open again."""
    body = _text(body, "body", MAX_BODY)
    actor = actor_label(by)
    if not _is_system(by) and str(_client_of(by)) != str(client_id):
        raise PermissionDenied("You may reply only on your own tickets.", code="forbidden")
    with transaction.atomic():
        ticket = _locked(ticket_id)
        if ticket.client_id is None or str(ticket.client_id) != str(client_id):
            raise NotFound("No such ticket.", code="ticket_not_found", field="ticket_id")
        name = _client_name(client_id)
        return _client_message(ticket, actor, name, body, source, attachments)


def _client_message(
    ticket: Ticket,
    actor: str,
    name: str,
    body: str,
    source: str,
    files: Sequence[inbound.IncomingFile] = (),
    dropped: Sequence[inbound.DroppedFile] = (),
    dedupe_key: str | None = None,
) -> TicketView:
    if ticket.status == "closed":
        raise Conflict(
            "This ticket is closed; please open a new one.", code="ticket_closed", field="status"
        )
    _add_message(
        ticket,
        kind="client",
        author=actor,
        author_name=name,
        body=body,
        source=source,
        files=files,
        dropped=dropped,
        dedupe_key=dedupe_key,
    )
    if ticket.status in ("pending_client", "resolved"):
        _set_status(ticket, "open", actor, "client replied")
    _save(ticket)
    _emit_updated(ticket, "client_reply", actor, visible=False)
    return ticket_view(ticket)


def staff_reply(
    ticket_id: UUID | str,
    *,
    body: str,
    by: Any,
    then_status: str | None = None,
    attachments: Sequence[inbound.IncomingFile] = (),
) -> TicketView:
    """Staff answer the client (a new ticket becomes open); ``then_status`` may set it to
    pending client or resolved in the same step. The first reply stops the response clock."""
    body = _text(body, "body", MAX_BODY)
    actor = actor_label(by)
    with transaction.atomic():
        ticket = _locked(ticket_id)
        _require_worker(by, ticket.queue)
        if ticket.status == "closed":
            raise Conflict(
                "A closed ticket takes no replies.", code="ticket_closed", field="status"
            )
        if then_status is not None:
            states.check_choice(then_status, {"pending_client", "resolved"}, "then_status")
        message = _add_message(
            ticket,
            kind="staff",
            author=actor,
            author_name=_display_name(by),
            body=body,
            source="staff",
            files=attachments,
        )
        ticket.staff_reply_count += 1
        if ticket.first_response_at is None:
            ticket.first_response_at = message.created_at
        if ticket.status == "new" and then_status != "pending_client" and then_status != "resolved":
            _set_status(ticket, "open", actor)
        if then_status and then_status != ticket.status:
            _set_status(ticket, then_status, actor)
        _save(ticket)
        _mail_requester(ticket, body)
        _audit(
            ticket,
            "staff_replied",
            actor,
            after={"message_id": message.id, "status": ticket.status},
        )
        _emit_updated(ticket, "staff_reply", actor, visible=True)
        return ticket_view(ticket)


def _mail_requester(ticket: Ticket, body: str) -> None:
    """E-mail a staff reply to a requester who has no client account (after the commit).

    Clients hear of replies through the notifications module (``ticket.updated``); a sender
    without an account has only their e-mail address, so support writes to it itself, with
    the reference in the subject so that their answer threads back onto the ticket.
    """
    if ticket.client_id is not None or not ticket.requester_email:
        return
    subject = f"[{ticket.reference}] {ticket.subject}"
    recipient = ticket.requester_email

    def send() -> None:
        try:
            send_mail(subject, body, None, [recipient])
        except (OSError, SMTPException):
            log.warning("support_reply_mail_failed", reference=ticket.reference)

    transaction.on_commit(send)


def add_note(ticket_id: UUID | str, *, body: str, by: Any) -> TicketView:
    """An internal note: staff only, never shown to the client, no event to the client."""
    body = _text(body, "body", MAX_BODY)
    actor = actor_label(by)
    with transaction.atomic():
        ticket = _locked(ticket_id)
        _require_worker(by, ticket.queue)
        message = _add_message(
            ticket,
            kind="note",
            author=actor,
            author_name=_display_name(by),
            body=body,
            source="staff",
        )
        _save(ticket)
        _audit(ticket, "note_added", actor, after={"message_id": message.id})
        return ticket_view(ticket)


# -- workflow ----------------------------------------------------------------------------------


def change_status(
    ticket_id: UUID | str, to_status: str, *, by: Any, reason: str = ""
) -> TicketView:
    """Move a ticket along the status table (resolve, close, reopen, pending client…)."""
    actor = actor_label(by)
    reason = _text(reason, "reason", 500, required=False)
    with transaction.atomic():
        ticket = _locked(ticket_id)
        _require_worker(by, ticket.queue)
        before = ticket.status
        _set_status(ticket, to_status, actor, reason)
        _save(ticket)
        _audit(
            ticket,
            "status_changed",
            actor,
            reason=reason,
            before={"status": before},
            after={"status": to_status},
        )
        _emit_updated(ticket, "status", actor, visible=True)
        return ticket_view(ticket)


def escalate(ticket_id: UUID | str, *, to_queue: str, reason: str, by: Any) -> TicketView:
    """Hand the ticket to another queue along the escalation paths, with a reason (audited).

    The assignee is cleared: the receiving queue picks it up.
    """
    actor = actor_label(by)
    reason = _text(reason, "reason", 500)
    states.check_choice(to_queue, states.QUEUES, "queue")
    with transaction.atomic():
        ticket = _locked(ticket_id)
        _require_worker(by, ticket.queue)
        if ticket.status == "closed":
            raise Conflict(
                "A closed ticket cannot be escalated.", code="ticket_closed", field="status"
            )
        allowed = states.ESCALATIONS[ticket.queue]
        if to_queue not in allowed:
            raise ValidationError(
                f"A ticket in {ticket.queue} can be escalated to {', '.join(sorted(allowed))},"
                f" not {to_queue}.",
                code="invalid_escalation",
                field="queue",
            )
        before = {"queue": ticket.queue, "assignee_id": ticket.assignee_id}
        _change(ticket, "escalated", ticket.queue, to_queue, actor, reason)
        ticket.queue = to_queue
        ticket.assignee_id = None
        _save(ticket)
        _audit(
            ticket,
            "escalated",
            actor,
            reason=reason,
            before=before,
            after={"queue": to_queue, "assignee_id": None},
        )
        _emit_updated(ticket, "escalated", actor, visible=False)
        return ticket_view(ticket)


def assign(ticket_id: UUID | str, *, assignee_id: int | None, by: Any) -> TicketView:
    """Give the ticket to a staff member who works its queue (``None``: unassign)."""
    from django.contrib.auth import get_user_model

    actor = actor_label(by)
    with transaction.atomic():
        ticket = _locked(ticket_id)
        _require_worker(by, ticket.queue)
        if assignee_id is not None:
            user = get_user_model().objects.filter(pk=assignee_id, is_active=True).first()
            if user is None or not has_role(user, states.QUEUE_ROLES[ticket.queue]):
                raise ValidationError(
                    f"The assignee must be active staff who work the {ticket.queue} queue.",
                    code="invalid_assignee",
                    field="assignee_id",
                )
        before = ticket.assignee_id
        if before == assignee_id:
            return ticket_view(ticket)
        ticket.assignee_id = assignee_id
        _change(ticket, "assigned", str(before or ""), str(assignee_id or ""), actor)
        _save(ticket)
        _audit(
            ticket,
            "assigned",
            actor,
            before={"assignee_id": before},
            after={"assignee_id": assignee_id},
        )
        _emit_updated(ticket, "assigned", actor, visible=False)
        return ticket_view(ticket)


def set_priority(ticket_id: UUID | str, priority: str, *, by: Any, reason: str = "") -> TicketView:
    """Change the priority; the SLA deadlines are recomputed from the ticket's opening time."""
    actor = actor_label(by)
    states.check_choice(priority, states.PRIORITIES, "priority")
    with transaction.atomic():
        ticket = _locked(ticket_id)
        _require_worker(by, ticket.queue)
        before = ticket.priority
        if before == priority:
            return ticket_view(ticket)
        target = sla_target(priority)
        ticket.priority = priority
        ticket.first_response_due = ticket.created_at + timedelta(
            minutes=target.first_response_minutes
        )
        ticket.resolution_due = ticket.created_at + timedelta(minutes=target.resolution_minutes)
        _change(ticket, "priority", before, priority, actor, reason)
        _save(ticket)
        _audit(
            ticket,
            "priority_changed",
            actor,
            reason=reason,
            before={"priority": before},
            after={"priority": priority},
        )
        _emit_updated(ticket, "priority", actor, visible=False)
        return ticket_view(ticket)


def tag_ticket(
    ticket_id: UUID | str, *, add: Iterable[str] = (), remove: Iterable[str] = (), by: Any
) -> list[str]:
    """Add and remove internal tags; returns the ticket's tags."""
    actor = actor_label(by)
    to_add, to_remove = _clean_tags(add), _clean_tags(remove)
    with transaction.atomic():
        ticket = _locked(ticket_id)
        _require_worker(by, ticket.queue)
        before = sorted(ticket.tags.values_list("name", flat=True))
        for name in to_add:
            TicketTag.objects.get_or_create(ticket=ticket, name=name)
        TicketTag.objects.filter(ticket=ticket, name__in=to_remove).delete()
        after = sorted(ticket.tags.values_list("name", flat=True))
        if after != before:
            _save(ticket)
            _audit(ticket, "tagged", actor, before={"tags": before}, after={"tags": after})
        return after


def set_sla_target(
    priority: str, *, first_response_minutes: int, resolution_minutes: int, by: Any
) -> None:
    """Set the SLA targets of a priority (admin); applies to tickets opened from now on."""
    states.check_choice(priority, states.PRIORITIES, "priority")
    actor = actor_label(by)
    if not _is_system(by) and not has_role(by, Role.ADMIN):
        raise PermissionDenied("Only an administrator sets SLA targets.", code="role_required")
    for name, value in (
        ("first_response_minutes", first_response_minutes),
        ("resolution_minutes", resolution_minutes),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValidationError(
                f"{name} must be a whole number of minutes above zero.",
                code="invalid_minutes",
                field=name,
            )
    if resolution_minutes < first_response_minutes:
        raise ValidationError(
            "The resolution target cannot be shorter than the first-response target.",
            code="resolution_before_response",
            field="resolution_minutes",
        )
    with transaction.atomic():
        before = sla_target(priority)
        SlaTarget.objects.update_or_create(
            priority=priority,
            defaults={
                "first_response_minutes": first_response_minutes,
                "resolution_minutes": resolution_minutes,
                "updated_at": clock.now(),
                "updated_by": actor,
            },
        )
        audit.record(
            actor=actor,
            action="support.sla_target_set",
            object_type="sla_target",
            object_id=priority,
            before={
                "first": before.first_response_minutes,
                "resolution": before.resolution_minutes,
            },
            after={"first": first_response_minutes, "resolution": resolution_minutes},
        )


def close_resolved(*, older_than: timedelta = AUTO_CLOSE_AFTER) -> int:
    """Close tickets resolved longer than ``older_than`` ago; returns how many."""
    cutoff = clock.now() - older_than
    ids = list(
        Ticket.objects.filter(status="resolved", resolved_at__lt=cutoff)
        .order_by("id")
        .values_list("id", flat=True)[:500]
    )
    closed = 0
    for ticket_id in ids:
        with transaction.atomic():
            ticket = _locked(ticket_id)
            if (
                ticket.status != "resolved"
                or not ticket.resolved_at
                or ticket.resolved_at >= cutoff
            ):
                continue
            _set_status(ticket, "closed", "system:support", "resolved for 7 days")
            _save(ticket)
            _emit_updated(ticket, "status", "system:support", visible=True)
            closed += 1
    return closed


# -- payments mirrored into tickets ------------------------------------------------------------


def mirror_payment_status(
    *, event_id: str, event_type: str, payload: Mapping[str, Any], occurred_at: datetime
) -> int:
    """Write a system message on every ticket linked to the payment an event is about.

    Keyed by (event, ticket): a redelivered event adds nothing. A link's last status moves
    only forward in time, so an event that arrives late does not overwrite a newer status.
    Returns how many messages were added.
    """
    kind, _, status = event_type.partition(".")
    if kind not in states.PAYMENT_LINK_KINDS or not status:
        return 0
    targets = {str(payload.get(k) or "") for k in ("payment_id", f"{kind}_id", "reference")} - {""}
    added = 0
    for ticket_id in tickets_linked_to(kind, targets):
        with transaction.atomic():
            ticket = _locked(ticket_id)
            key = f"payment-event:{event_id}:{ticket.id}"
            if TicketMessage.objects.filter(dedupe_key=key).exists():
                continue
            code = event_type if event_type in SYSTEM_TEXTS else "payment.other"
            _add_message(
                ticket,
                kind="system",
                author="system:payments",
                author_name="",
                source="system",
                system_code=code,
                system_params={
                    "reference": str(payload.get("reference") or payload.get("payment_id", "")),
                    "amount": payload.get("amount"),
                    "currency": str(payload.get("currency") or ""),
                    "event": event_type,
                },
                dedupe_key=key,
                at=occurred_at,
            )
            link = TicketLink.objects.get(ticket=ticket, kind=kind)
            if link.last_status_at is None or occurred_at >= link.last_status_at:
                link.last_status, link.last_status_at = status[:30], occurred_at
                link.save(update_fields=["last_status", "last_status_at"])
            _save(ticket)
            _emit_updated(ticket, "payment_status", "system:payments", visible=True)
            added += 1
    return added


# -- inbound e-mail ----------------------------------------------------------------------------


def ingest_email(raw: bytes) -> InboundResult:
    """Turn an inbound e-mail into a ticket or a reply.

    A subject carrying a ticket reference, from that ticket's client or requester, goes onto
    the ticket; a reply to a closed ticket opens a new one linked to it. Anything else opens
    a new ticket — for the client with that e-mail address, or without a client for an
    unknown sender. The same Message-ID twice is a no-op.
    """
    mail = inbound.parse(raw)
    key = f"email:{mail.message_id}"
    seen = TicketMessage.objects.filter(dedupe_key=key).select_related("ticket").first()
    if seen is not None:
        return InboundResult(ticket_view(seen.ticket), False, True, len(mail.dropped))
    client = client_for_email(mail.sender)
    actor = f"email:{mail.sender}"
    body = mail.body or "(no text)"
    try:
        with transaction.atomic():
            target = _reply_target(mail, client)
            if target is not None and target.status != "closed":
                view = _client_message(
                    target,
                    actor,
                    mail.sender_name or mail.sender,
                    body,
                    "email",
                    mail.files,
                    mail.dropped,
                    key,
                )
                return InboundResult(view, False, False, len(mail.dropped))
            links = {"ticket": target.reference} if target is not None else {}
            view = _create(
                client_id=client,
                requester_email="" if client else mail.sender,
                category="other",
                queue="support",
                priority="normal",
                subject=_text(mail.subject or "(no subject)", "subject", MAX_SUBJECT),
                body=body,
                source="email",
                actor=actor,
                author_kind="client",
                author_name=mail.sender_name or mail.sender,
                links=links,
                idempotency_key=key[:200],
                files=mail.files,
                dropped=mail.dropped,
                dedupe_key=key,
            )
            if target is not None:
                _add_message(
                    Ticket.objects.get(pk=view.id),
                    kind="system",
                    author="system:support",
                    author_name="",
                    source="system",
                    system_code="ticket.reopened_by_email",
                    system_params={"previous": target.reference},
                )
            return InboundResult(view, True, False, len(mail.dropped))
    except IntegrityError:
        seen = TicketMessage.objects.filter(dedupe_key=key).select_related("ticket").first()
        if seen is None:
            raise
        return InboundResult(ticket_view(seen.ticket), False, True, len(mail.dropped))


def _reply_target(mail: inbound.ParsedEmail, client: UUID | None) -> Ticket | None:
    """The ticket the e-mail answers: its reference, and the sender is that ticket's party."""
    if not mail.reference:
        return None
    ticket = Ticket.objects.select_for_update().filter(reference=mail.reference).first()
    if ticket is None:
        return None
    same_client = client is not None and ticket.client_id is not None and client == ticket.client_id
    same_requester = bool(ticket.requester_email) and ticket.requester_email == mail.sender
    return ticket if same_client or same_requester else None
