"""Tables of automations (only ``brokerdesk.automations.services`` writes them).

* ``Rule``: "when <event>, if <conditions>, then <actions>", configured by staff as data
  (never code); every change bumps ``version`` and keeps a ``RuleVersion`` snapshot.
* ``Run``: one rule applied to one event — unique per (rule, event), which makes a
  redelivered event a no-op. Holds the conditions as evaluated (with the values seen), the
  changes each action made, and the outcome. Failed runs are the exceptions queue.
"""

from __future__ import annotations

from django.db import models

from brokerdesk.core.ids import new_id


class Rule(models.Model):
    """An automation rule; ``conditions`` and ``actions`` are validated structured lists."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    name = models.CharField(max_length=200)
    trigger = models.CharField(max_length=64)  # an event type, e.g. kyc.approved
    enabled = models.BooleanField(default=True)
    version = models.PositiveIntegerField(default=1)
    conditions = models.JSONField(default=list)
    actions = models.JSONField(default=list)
    created_by = models.CharField(max_length=80)
    updated_by = models.CharField(max_length=80)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["trigger", "enabled"], name="automations_rule_trigger")]

    def __str__(self) -> str:
        return self.name


class RuleVersion(models.Model):
    """What a rule said at one version (runs name the version they applied)."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    rule = models.ForeignKey(Rule, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    name = models.CharField(max_length=200)
    trigger = models.CharField(max_length=64)
    enabled = models.BooleanField()
    conditions = models.JSONField(default=list)
    actions = models.JSONField(default=list)
    saved_by = models.CharField(max_length=80)
    saved_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["rule", "version"], name="automations_rule_version")
        ]

    def __str__(self) -> str:
        return f"{self.rule_id} v{self.version}"


class RunStatus(models.TextChoices):
    """Outcome of a run."""

    SKIPPED = "skipped", "Conditions not met"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    HANDLED = "handled", "Handled manually"


class Run(models.Model):
    """One rule applied to one event (unique per rule and event)."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    rule = models.ForeignKey(Rule, on_delete=models.PROTECT, related_name="runs")
    rule_version = models.PositiveIntegerField()
    event_id = models.CharField(max_length=64)
    event_type = models.CharField(max_length=64)
    event_payload = models.JSONField(default=dict)
    event_occurred_at = models.CharField(max_length=40, blank=True, default="")
    client_id = models.UUIDField(null=True, blank=True)
    status = models.CharField(max_length=12, choices=RunStatus.choices)
    conditions = models.JSONField(default=list)  # each with the value seen and the result
    results = models.JSONField(default=list)  # per action: status, changes or error
    override_roles = models.JSONField(default=list)
    error = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=1)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    handled_by = models.CharField(max_length=80, blank=True, default="")
    handled_note = models.TextField(blank=True, default="")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["rule", "event_id"], name="automations_run_once")
        ]
        indexes = [
            models.Index(fields=["status", "-created_at"], name="automations_run_status"),
            models.Index(fields=["-created_at"], name="automations_run_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.rule_id} on {self.event_id}"
