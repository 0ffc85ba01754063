"""Tables of notifications (only ``brokerdesk.notifications.services`` writes them).

* ``Preference``: a user's language and, per kind, whether to e-mail and whether to show an
  in-app message.
* ``Notification``: an in-app message, unique per idempotency key (event and recipient).
* ``Email``: an e-mail to send (an outbox: written in the event's transaction, sent after
  the commit by SMTP, retried by a periodic job), unique per idempotency key.
"""

from __future__ import annotations

from django.db import models

from brokerdesk.core.ids import new_id


class Preference(models.Model):
    """One user's notification settings (missing kinds use the defaults: both channels on)."""

    user_id = models.IntegerField(unique=True)
    language = models.CharField(max_length=10, blank=True, default="")
    channels = models.JSONField(default=dict)  # kind -> {"email": bool, "in_app": bool}
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"preferences of user {self.user_id}"


class Notification(models.Model):
    """An in-app message to a user (or a client without a login yet)."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    user_id = models.IntegerField(null=True, blank=True)
    client_id = models.UUIDField(null=True, blank=True)
    kind = models.CharField(max_length=40)
    subject = models.CharField(max_length=300)
    body = models.TextField()
    language = models.CharField(max_length=10)
    idempotency_key = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField()
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["user_id", "-created_at"], name="notif_user_recent"),
            models.Index(fields=["client_id", "-created_at"], name="notif_client_recent"),
        ]

    def __str__(self) -> str:
        return self.subject


class EmailStatus(models.TextChoices):
    """Where an e-mail is."""

    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class Email(models.Model):
    """An e-mail to send (and, once sent, the record that it was)."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    user_id = models.IntegerField(null=True, blank=True)
    client_id = models.UUIDField(null=True, blank=True)
    kind = models.CharField(max_length=40)
    to_address = models.EmailField()
    subject = models.CharField(max_length=300)
    body = models.TextField()
    language = models.CharField(max_length=10)
    idempotency_key = models.CharField(max_length=200, unique=True)
    status = models.CharField(max_length=8, choices=EmailStatus.choices, default="queued")
    attempts = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "created_at"], name="notif_email_queue")]

    def __str__(self) -> str:
        return f"{self.kind} to {self.to_address}"
