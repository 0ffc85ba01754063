"""Tables of support (only ``support.services`` writes them).

A ``Ticket`` carries its status, queue, priority, assignee and SLA deadlines; its thread is
``TicketMessage`` rows (client and staff replies, internal notes, system messages) with their
``TicketAttachment`` files; ``TicketLink`` ties it to a payment or another record;
``TicketTag`` holds its internal tags; ``TicketChange`` is its history (status, escalation,
assignment, priority). ``SlaTarget`` holds the SLA targets per priority as data.
"""

from __future__ import annotations

from django.db import models

from brokerdesk.core.ids import new_id


class SlaTarget(models.Model):
    """The SLA targets of one priority: minutes to the first staff reply and to resolution."""

    priority = models.CharField(max_length=10, primary_key=True)
    first_response_minutes = models.PositiveIntegerField()
    resolution_minutes = models.PositiveIntegerField()
    updated_at = models.DateTimeField()
    updated_by = models.CharField(max_length=100)

    def __str__(self) -> str:
        return f"SLA {self.priority}"


class Ticket(models.Model):
    """A support ticket (status per ``states.TICKET_TRANSITIONS``)."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    reference = models.CharField(max_length=12, unique=True)
    idempotency_key = models.CharField(max_length=200, unique=True, null=True, blank=True)
    client_id = models.UUIDField(null=True, blank=True, db_index=True)
    requester_email = models.EmailField(blank=True, default="")
    category = models.CharField(max_length=20)
    queue = models.CharField(max_length=20)
    priority = models.CharField(max_length=10)
    status = models.CharField(max_length=20)
    subject = models.CharField(max_length=200)
    source = models.CharField(max_length=20)
    assignee_id = models.IntegerField(null=True, blank=True)  # a staff user's pk
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    first_response_due = models.DateTimeField()
    resolution_due = models.DateTimeField()
    first_response_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    staff_reply_count = models.PositiveIntegerField(default=0)
    reopened_count = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [
            models.Index(fields=["queue", "status", "created_at"], name="support_queue_status_idx"),
            models.Index(fields=["client_id", "created_at"], name="support_client_idx"),
        ]

    def __str__(self) -> str:
        return f"ticket {self.reference} {self.status}"


class TicketMessage(models.Model):
    """One entry of a ticket's thread.

    ``kind``: ``client`` and ``staff`` replies and ``system`` messages are public; ``note`` is
    internal and never shown to the client. A system message carries ``system_code`` and
    ``system_params`` and is worded in the reader's language when shown. ``dedupe_key`` makes
    a repeated inbound e-mail or payment event a no-op.
    """

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    ticket = models.ForeignKey(Ticket, on_delete=models.PROTECT, related_name="messages")
    kind = models.CharField(max_length=10)
    author = models.CharField(max_length=200)
    author_name = models.CharField(max_length=200, blank=True, default="")
    body = models.TextField(blank=True, default="")
    system_code = models.CharField(max_length=60, blank=True, default="")
    system_params = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=20)
    dedupe_key = models.CharField(max_length=300, unique=True, null=True, blank=True)
    dropped_attachments = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["ticket", "created_at"], name="support_thread_idx")]

    def __str__(self) -> str:
        return f"{self.kind} on {self.ticket_id}"


class TicketAttachment(models.Model):
    """A file that came with a message (type and size checked on the way in)."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    message = models.ForeignKey(TicketMessage, on_delete=models.PROTECT, related_name="attachments")
    filename = models.CharField(max_length=200)
    content_type = models.CharField(max_length=100)
    size = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    content = models.BinaryField()

    def __str__(self) -> str:
        return self.filename


class TicketLink(models.Model):
    """A record the ticket is about (``kind`` withdrawal, deposit, ticket, …) and its status."""

    ticket = models.ForeignKey(Ticket, on_delete=models.PROTECT, related_name="links")
    kind = models.CharField(max_length=30)
    target = models.CharField(max_length=100)
    last_status = models.CharField(max_length=30, blank=True, default="")
    last_status_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["ticket", "kind"], name="support_link_kind_uniq")
        ]
        indexes = [models.Index(fields=["kind", "target"], name="support_link_target_idx")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}"


class TicketTag(models.Model):
    """An internal tag on a ticket (VIP, compliance flag, IB relationship, …)."""

    ticket = models.ForeignKey(Ticket, on_delete=models.PROTECT, related_name="tags")
    name = models.CharField(max_length=50)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["ticket", "name"], name="support_tag_uniq")]
        indexes = [models.Index(fields=["name"], name="support_tag_name_idx")]

    def __str__(self) -> str:
        return self.name


class TicketChange(models.Model):
    """One change of a ticket: status, escalation, assignment or priority, with who and why."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    ticket = models.ForeignKey(Ticket, on_delete=models.PROTECT, related_name="changes")
    action = models.CharField(max_length=20)
    from_value = models.CharField(max_length=100, blank=True, default="")
    to_value = models.CharField(max_length=100, blank=True, default="")
    reason = models.TextField(blank=True, default="")
    actor = models.CharField(max_length=200)
    occurred_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["ticket", "occurred_at"], name="support_change_idx")]

    def __str__(self) -> str:
        return f"{self.action} {self.from_value}→{self.to_value}"
