"""Support pages: the client's "Support" in the portal and the staff "Tickets" in the back office.

Portal pages read only the signed-in client's tickets and only their public messages.
Back-office pages show the queues of the viewer's roles (admin and auditor: all); every change
goes through ``support.services``, which checks the role again (the auditor reads only).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _t
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_POST

from brokerdesk.backoffice.access import staff_page
from brokerdesk.core.errors import DomainError, NotFound
from brokerdesk.portal.access import client_page
from brokerdesk.support import queries, services, states
from brokerdesk.support.inbound import MAX_ATTACHMENT_BYTES, IncomingFile

STAFF_ROLES = (*states.QUEUE_ROLES.values(), *states.READ_ONLY_ROLES)


def _choices(table: dict[str, object]) -> list[tuple[str, object]]:
    return list(table.items())


def _files(request: HttpRequest, name: str = "attachment") -> list[IncomingFile]:
    return [
        IncomingFile(f.name or "attachment", f.content_type or "", f.read(MAX_ATTACHMENT_BYTES + 1))
        for f in request.FILES.getlist(name)
    ]


# -- forms -------------------------------------------------------------------------------------


class NewTicketForm(forms.Form):
    """A client's new ticket."""

    category = forms.ChoiceField(label=_("What is it about?"), choices=_choices(states.CATEGORIES))
    payment = forms.ChoiceField(
        label=_("Which payment? (optional)"),
        required=False,
        help_text=_("Choose the deposit or withdrawal if your question is about one."),
    )
    subject = forms.CharField(label=_("Subject"), max_length=services.MAX_SUBJECT)
    body = forms.CharField(
        label=_("Your message"), widget=forms.Textarea(attrs={"rows": 6}), max_length=20_000
    )
    attachment = forms.FileField(
        label=_("Attach a file (optional)"),
        required=False,
        help_text=_("PDF, PNG, JPEG or plain text, up to 5 MB."),
    )

    def __init__(self, *args: Any, payments: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        payment = self.fields["payment"]
        assert isinstance(payment, forms.ChoiceField)
        payment.choices = [("", _("None")), *payments]


class ReplyForm(forms.Form):
    """A reply on a ticket."""

    body = forms.CharField(
        label=_("Your reply"), widget=forms.Textarea(attrs={"rows": 4}), max_length=20_000
    )
    attachment = forms.FileField(label=_("Attach a file (optional)"), required=False)


class StaffNewTicketForm(forms.Form):
    """A ticket opened by staff for a client (by e-mail address) or any e-mail address."""

    email = forms.EmailField(
        label=_("Client or requester e-mail"),
        help_text=_("A client's e-mail links the ticket to that client."),
    )
    category = forms.ChoiceField(label=_("Category"), choices=_choices(states.CATEGORIES))
    queue = forms.ChoiceField(label=_("Queue"), choices=_choices(states.QUEUES))
    priority = forms.ChoiceField(
        label=_("Priority"), choices=_choices(states.PRIORITIES), initial="normal"
    )
    subject = forms.CharField(label=_("Subject"), max_length=services.MAX_SUBJECT)
    body = forms.CharField(label=_("Message"), widget=forms.Textarea(attrs={"rows": 5}))


# -- client portal -----------------------------------------------------------------------------


def _client_payments(client_id: UUID) -> list[tuple[str, str]]:
    """The client's recent payments as choices ``withdrawal:<id>`` → "Withdrawal REF"."""
    from brokerdesk.payments import queries as payments
    from brokerdesk.support.wording import format_amount

    out: list[tuple[str, str]] = []
    for w in payments.withdrawals_of(client_id, limit=10):
        amount = format_amount(w.amount, w.currency)
        out.append(
            (
                f"withdrawal:{w.id}",
                _t("Withdrawal %(ref)s, %(amount)s %(currency)s")
                % {"ref": w.reference, "amount": amount, "currency": w.currency},
            )
        )
    for d in payments.deposits_of(client_id, limit=10):
        amount = format_amount(d.amount, d.currency)
        out.append(
            (
                f"deposit:{d.id}",
                _t("Deposit %(ref)s, %(amount)s %(currency)s")
                % {"ref": d.reference, "amount": amount, "currency": d.currency},
            )
        )
    return out


@client_page
def portal_tickets(request: HttpRequest) -> HttpResponse:
    """The client's tickets."""
    tickets = queries.tickets_of(request.client_id)  # type: ignore[attr-defined]
    return render(request, "support/portal_list.html", {"tickets": tickets})


@client_page
@require_http_methods(["GET", "POST"])
def portal_new(request: HttpRequest) -> HttpResponse:
    """Open a new ticket."""
    client_id: UUID = request.client_id  # type: ignore[attr-defined]
    payments = _client_payments(client_id)
    form = NewTicketForm(request.POST or None, request.FILES or None, payments=payments)
    if request.method == "POST" and form.is_valid():
        links = {}
        if form.cleaned_data["payment"]:
            kind, _sep, target = form.cleaned_data["payment"].partition(":")
            links[kind] = target
        try:
            view = services.open_ticket(
                client_id=client_id,
                category=form.cleaned_data["category"],
                subject=form.cleaned_data["subject"],
                body=form.cleaned_data["body"],
                source="portal",
                by=request.user,
                links=links,
                attachments=_files(request),
            )
        except DomainError as error:
            form.add_error(None, error.message)
        else:
            messages.success(
                request,
                _t("Ticket %(reference)s is open. We will answer you here.")
                % {"reference": view.reference},
            )
            return redirect("support:portal_ticket", ticket_id=view.id)
    return render(request, "support/portal_new.html", {"form": form})


@client_page
@require_http_methods(["GET", "POST"])
def portal_ticket(request: HttpRequest, ticket_id: UUID) -> HttpResponse:
    """One ticket's public thread, with the reply form."""
    client_id: UUID = request.client_id  # type: ignore[attr-defined]
    try:
        thread = queries.client_thread(client_id, ticket_id)
    except NotFound:
        raise Http404 from None
    form = ReplyForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.client_reply(
                ticket_id,
                client_id=client_id,
                body=form.cleaned_data["body"],
                by=request.user,
                attachments=_files(request),
            )
        except DomainError as error:
            form.add_error(None, error.message)
        else:
            messages.success(request, _t("Your reply was sent."))
            return redirect("support:portal_ticket", ticket_id=ticket_id)
    return render(
        request,
        "support/portal_ticket.html",
        {"thread": thread, "ticket": thread.ticket, "form": form},
    )


@client_page
def portal_attachment(request: HttpRequest, attachment_id: UUID) -> HttpResponse:
    """Download an attachment of the client's own ticket."""
    try:
        meta, content = queries.client_attachment(
            request.client_id,  # type: ignore[attr-defined]
            attachment_id,
        )
    except NotFound:
        raise Http404 from None
    return _download(meta, content)


def _download(meta: queries.AttachmentView, content: bytes) -> HttpResponse:
    response = HttpResponse(content, content_type=meta.content_type)
    safe = meta.filename.replace('"', "").replace("\r", "").replace("\n", "")
    response["Content-Disposition"] = f'attachment; filename="{safe}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


# -- back office -------------------------------------------------------------------------------


def _filters(request: HttpRequest) -> queries.TicketFilters:
    g = request.GET
    assignee = g.get("assignee", "")
    return queries.TicketFilters(
        queue=g.get("queue") or None,
        status=g.get("status", "active") or None,
        priority=g.get("priority") or None,
        category=g.get("category") or None,
        assignee_id=request.user.pk if assignee == "me" else None,
        unassigned=assignee == "none",
        tag=g.get("tag") or None,
        breached=g.get("breached") == "1",
        text=g.get("q", "").strip(),
    )


@staff_page(*STAFF_ROLES)
def staff_tickets(request: HttpRequest) -> HttpResponse:
    """The queues with their counts and the filtered ticket list."""
    filters = _filters(request)
    tickets = queries.staff_tickets(request.user, filters)
    return render(
        request,
        "support/staff_list.html",
        {
            "queues": queries.queue_counts(request.user),
            "tickets": tickets,
            "names": queries.staff_names(t.assignee_id for t in tickets if t.assignee_id),
            "f": request.GET,
            "current_status": "" if filters.status is None else filters.status,
            "statuses": states.STAFF_STATUS_LABELS,
            "priorities": states.PRIORITIES,
            "categories": states.CATEGORIES,
            "queue_labels": states.QUEUES,
            "can_open": bool(queries.workable_queues(request.user)),
        },
    )


@staff_page(*states.QUEUE_ROLES.values())
@require_http_methods(["GET", "POST"])
def staff_new(request: HttpRequest) -> HttpResponse:
    """Open a ticket on behalf of a client or an e-mail address."""
    form = StaffNewTicketForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        client_id = queries.client_for_email(data["email"])
        try:
            view = services.open_ticket(
                client_id=client_id,
                requester_email="" if client_id else data["email"],
                category=data["category"],
                queue=data["queue"],
                priority=data["priority"],
                subject=data["subject"],
                body=data["body"],
                source="staff",
                by=request.user,
            )
        except DomainError as error:
            form.add_error(None, error.message)
        else:
            messages.success(
                request, _t("Ticket %(reference)s opened.") % {"reference": view.reference}
            )
            return redirect("support:ticket", ticket_id=view.id)
    return render(request, "support/staff_new.html", {"form": form})


def _client_panel(client_id: UUID | None) -> dict[str, Any] | None:
    """The one-screen client view beside a ticket: profile, KYC, wallets, payments, tickets,
    timeline (each read from its own module's queries)."""
    if client_id is None:
        return None
    from brokerdesk.clients import queries as clients
    from brokerdesk.compliance import queries as compliance
    from brokerdesk.ledger import queries as ledger
    from brokerdesk.payments import queries as payments
    from brokerdesk.support.wording import format_amount

    try:
        client = clients.get_client(client_id)
    except NotFound:
        return None
    return {
        "client": client,
        "kyc": compliance.kyc_status(client_id),
        "flags": compliance.open_flags(client_id),
        "kyc_last": next(iter(reversed(compliance.kyc_history(client_id))), None),
        "balances": [
            {
                "currency": b.currency,
                "bucket": b.bucket,
                "available": format_amount(b.available, b.currency),
            }
            for b in ledger.balances_of("client", str(client_id))
        ],
        "withdrawals": [
            {
                "reference": w.reference,
                "status": w.status,
                "amount": format_amount(w.amount, w.currency),
                "currency": w.currency,
            }
            for w in payments.withdrawals_of(client_id, limit=5)
        ],
        "deposits": [
            {
                "reference": d.reference,
                "status": d.status,
                "amount": format_amount(d.amount, d.currency),
                "currency": d.currency,
            }
            for d in payments.deposits_of(client_id, limit=5)
        ],
        "tickets": [t for t in queries.tickets_of(client_id) if t.is_open],
        "timeline": clients.timeline(client_id, limit=40),
    }


@staff_page(*STAFF_ROLES)
def staff_ticket(request: HttpRequest, ticket_id: UUID) -> HttpResponse:
    """A ticket with its thread, notes, tags, actions and the client's timeline beside it."""
    try:
        detail = queries.staff_ticket(request.user, ticket_id)
    except NotFound:
        raise Http404 from None
    ticket = detail.ticket
    names = _people(detail)
    return render(
        request,
        "support/staff_ticket.html",
        {
            "detail": detail,
            "ticket": ticket,
            "names": names,
            "panel": _client_panel(ticket.client_id),
            "escalate_to": [
                (q, states.QUEUES[q]) for q in sorted(states.ESCALATIONS[ticket.queue])
            ],
            "next_statuses": [
                (s, states.STAFF_STATUS_LABELS[s])
                for s in sorted(states.TICKET_TRANSITIONS[ticket.status])
            ],
            "priorities": states.PRIORITIES,
            "assignable": queries.assignable_staff(ticket.queue) if detail.can_work else [],
        },
    )


def _people(detail: queries.StaffTicket) -> dict[Any, str]:
    """Names of the staff a ticket page mentions, by pk, by pk as text and by actor label."""
    ids = {detail.ticket.assignee_id} if detail.ticket.assignee_id else set()
    for change in detail.history:
        ids.update(
            int(v)
            for v in (change.from_value, change.to_value)
            if change.action == "assigned" and v.isdigit()
        )
        if change.actor.startswith("user:") and change.actor[5:].isdigit():
            ids.add(int(change.actor[5:]))
    names = queries.staff_names(ids)
    out: dict[Any, str] = {}
    for pk, name in names.items():
        out[pk] = out[str(pk)] = out[f"user:{pk}"] = name
    return out


ACTIONS = ("reply", "note", "status", "escalate", "assign", "priority", "tags")


@staff_page(*states.QUEUE_ROLES.values())
@require_POST
def staff_action(request: HttpRequest, ticket_id: UUID, action: str) -> HttpResponse:
    """Apply one action from the ticket page, then show the ticket again."""
    if action not in ACTIONS:
        raise Http404
    p = request.POST
    try:
        done = _apply(request, ticket_id, action, p)
    except DomainError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, done)
    return redirect("support:ticket", ticket_id=ticket_id)


def _apply(request: HttpRequest, ticket_id: UUID, action: str, p: Any) -> str:
    user = request.user
    if action == "reply":
        services.staff_reply(
            ticket_id,
            body=p.get("body", ""),
            by=user,
            then_status=p.get("then_status") or None,
            attachments=_files(request),
        )
        return _t("Your reply was sent to the client.")
    if action == "note":
        services.add_note(ticket_id, body=p.get("body", ""), by=user)
        return _t("Internal note added.")
    if action == "status":
        services.change_status(
            ticket_id, p.get("to_status", ""), by=user, reason=p.get("reason", "")
        )
        return _t("Status changed.")
    if action == "escalate":
        services.escalate(
            ticket_id, to_queue=p.get("to_queue", ""), reason=p.get("reason", ""), by=user
        )
        return _t("Ticket escalated.")
    if action == "assign":
        raw = p.get("assignee_id", "")
        assignee = user.pk if raw == "me" else (int(raw) if raw.isdigit() else None)
        services.assign(ticket_id, assignee_id=assignee, by=user)
        return _t("Assignment saved.")
    if action == "priority":
        services.set_priority(ticket_id, p.get("priority", ""), by=user, reason=p.get("reason", ""))
        return _t("Priority changed.")
    services.tag_ticket(
        ticket_id,
        add=p.get("add", "").replace(",", " ").split(),
        remove=p.getlist("remove"),
        by=user,
    )
    return _t("Tags saved.")


@staff_page(*STAFF_ROLES)
def staff_attachment(request: HttpRequest, attachment_id: UUID) -> HttpResponse:
    """Download an attachment of a ticket in a queue the viewer may read."""
    try:
        meta, content = queries.staff_attachment(request.user, attachment_id)
    except NotFound:
        raise Http404 from None
    return _download(meta, content)


@staff_page(*states.QUEUE_ROLES.values(), *states.READ_ONLY_ROLES)
def staff_figures(request: HttpRequest) -> HttpResponse:
    """First-contact resolution by category and SLA attainment by queue."""
    return render(
        request,
        "support/staff_figures.html",
        {
            "fcr": queries.first_contact_resolution(),
            "fcr_rows": queries.fcr_by_category(),
            "sla_rows": queries.sla_attainment(),
            "targets": queries.sla_targets(),
        },
    )
