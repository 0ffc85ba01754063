"""compliance tables: rule-set versions, KYC cases and their history, flags, documents.

Clients are referred to by id (``client_id``), not by foreign key: this module reads the
clients module through ``clients.queries`` only. Only ``compliance.services`` writes here.
"""

from __future__ import annotations

from django.db import models

from brokerdesk.compliance.kyc import KycState
from brokerdesk.core.ids import new_id


class RuleSet(models.Model):
    """One version of a jurisdiction's rule set (data, never edited once stored)."""

    jurisdiction = models.SlugField(max_length=30)
    version = models.PositiveIntegerField()
    name = models.CharField(max_length=200)
    effective_from = models.DateField()
    data = models.JSONField()
    checksum = models.CharField(max_length=64)
    loaded_at = models.DateTimeField()
    loaded_by = models.CharField(max_length=200)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["jurisdiction", "version"], name="ruleset_version"),
        ]

    def __str__(self) -> str:
        return f"{self.jurisdiction} v{self.version}"


class KycCase(models.Model):
    """A client's KYC state (one per client); absent means ``lead``."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    client_id = models.UUIDField(unique=True)
    state = models.CharField(max_length=30, choices=[(s.value, s.value) for s in KycState])
    rejection_final = models.BooleanField(default=False)
    provider = models.CharField(max_length=30, blank=True, default="manual")
    provider_reference = models.CharField(max_length=100, blank=True, default="")
    opened_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    approved_at = models.DateTimeField(null=True, blank=True)
    last_screened_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["state", "updated_at"])]
        permissions = [
            ("decide_kyc", "Approve, reject or restrict KYC"),
            ("manage_flags", "Raise and clear compliance flags"),
            ("manage_screening", "Load sanctions lists and review screening hits"),
        ]

    def __str__(self) -> str:
        return f"KYC {self.client_id}: {self.state}"


class KycTransition(models.Model):
    """History of a KYC case: every transition with actor and reason."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    case = models.ForeignKey(KycCase, on_delete=models.PROTECT, related_name="transitions")
    from_state = models.CharField(max_length=30)
    to_state = models.CharField(max_length=30)
    actor = models.CharField(max_length=200)
    reason = models.TextField()
    occurred_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["case", "occurred_at"])]

    def __str__(self) -> str:
        return f"{self.from_state} → {self.to_state}"


class ClientFlag(models.Model):
    """An open (or closed) compliance flag on a client: aml_hold, sanctions_hit, dispute …"""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    client_id = models.UUIDField()
    kind = models.CharField(max_length=30)
    reason = models.TextField()
    source = models.CharField(max_length=200, blank=True, default="")
    opened_at = models.DateTimeField()
    opened_by = models.CharField(max_length=200)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.CharField(max_length=200, blank=True, default="")
    close_reason = models.TextField(blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["client_id", "kind"],
                condition=models.Q(closed_at__isnull=True),
                name="one_open_flag_per_kind",
            ),
        ]
        indexes = [models.Index(fields=["client_id", "closed_at"])]

    def __str__(self) -> str:
        return f"{self.kind} on {self.client_id}"


class Document(models.Model):
    """A KYC document: metadata here, the bytes in object storage under ``storage_key``."""

    class Status(models.TextChoices):
        RECEIVED = "received"
        ACCEPTED = "accepted"
        REJECTED = "rejected"
        EXPIRED = "expired"
        DELETED = "deleted"

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    client_id = models.UUIDField(db_index=True)
    doc_type = models.CharField(max_length=40)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED)
    content_type = models.CharField(max_length=50)
    size = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    storage_key = models.CharField(max_length=300, blank=True, default="")
    original_name = models.CharField(max_length=200, blank=True, default="")
    issued_on = models.DateField(null=True, blank=True)
    expires_on = models.DateField(null=True, blank=True)
    uploaded_at = models.DateTimeField()
    uploaded_by = models.CharField(max_length=200)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.CharField(max_length=200, blank=True, default="")
    review_note = models.TextField(blank=True, default="")
    expiry_reminded_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    deletion_reason = models.TextField(blank=True, default="")

    class Meta:
        indexes = [
            models.Index(fields=["status", "expires_on"]),
            models.Index(fields=["client_id", "doc_type"]),
        ]
        permissions = [("review_document", "Accept or reject KYC documents")]

    def __str__(self) -> str:
        return f"{self.doc_type} of {self.client_id}"


class DocumentAccess(models.Model):
    """Every issue of a signed URL and every download of a document."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    document = models.ForeignKey(Document, on_delete=models.PROTECT, related_name="accesses")
    action = models.CharField(max_length=20)  # url_issued | downloaded | refused
    actor = models.CharField(max_length=200)
    occurred_at = models.DateTimeField()
    detail = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["document", "occurred_at"])]

    def __str__(self) -> str:
        return f"{self.action} {self.document_id} by {self.actor}"


class SanctionsList(models.Model):
    """One loaded version of a sanctions or PEP list."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    source = models.SlugField(max_length=50)  # ofac_sdn, opensanctions, un, eu …
    format = models.CharField(max_length=20)  # ofac_csv | ftm_json
    checksum = models.CharField(max_length=64)
    entry_count = models.PositiveIntegerField()
    loaded_at = models.DateTimeField()
    loaded_by = models.CharField(max_length=200)
    active = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "checksum"], name="sanctions_list_version"),
            models.UniqueConstraint(
                fields=["source"], condition=models.Q(active=True), name="one_active_list"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source} ({self.entry_count})"


class SanctionsEntry(models.Model):
    """A listed person or organisation, with aliases and supporting evidence."""

    sanctions_list = models.ForeignKey(
        SanctionsList, on_delete=models.CASCADE, related_name="entries"
    )
    external_id = models.CharField(max_length=100)
    schema = models.CharField(max_length=10)  # person | entity
    name = models.CharField(max_length=300)
    aliases = models.JSONField(default=list)
    birth_years = models.JSONField(default=list)
    countries = models.JSONField(default=list)
    programs = models.JSONField(default=list)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["sanctions_list", "external_id"], name="sanctions_entry_unique"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ComplianceCase(models.Model):
    """An investigator case: sanctions hits or AML alerts about one client."""

    class Status(models.TextChoices):
        OPEN = "open"
        INVESTIGATING = "investigating"
        CLOSED = "closed"

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    client_id = models.UUIDField(db_index=True)
    kind = models.CharField(max_length=20)  # sanctions | aml
    status = models.CharField(max_length=15, choices=Status.choices, default=Status.OPEN)
    summary = models.CharField(max_length=300)
    assignee = models.CharField(max_length=200, blank=True, default="")
    outcome = models.CharField(max_length=30, blank=True, default="")
    opened_at = models.DateTimeField()
    opened_by = models.CharField(max_length=200)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["client_id", "kind"],
                condition=~models.Q(status="closed"),
                name="one_open_case_per_kind",
            ),
        ]
        indexes = [models.Index(fields=["status", "opened_at"])]

    def __str__(self) -> str:
        return f"{self.kind} case {self.client_id} ({self.status})"


class CaseNote(models.Model):
    """An investigator's note on a case (append-only)."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    case = models.ForeignKey(ComplianceCase, on_delete=models.PROTECT, related_name="notes")
    author = models.CharField(max_length=200)
    text = models.TextField()
    written_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"note on {self.case_id}"


class ScreeningHit(models.Model):
    """A possible match between a client and a list entry, waiting for review."""

    class Status(models.TextChoices):
        OPEN = "open"
        CONFIRMED = "confirmed"
        DISMISSED = "dismissed"

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    client_id = models.UUIDField(db_index=True)
    entry = models.ForeignKey(SanctionsEntry, on_delete=models.PROTECT, related_name="hits")
    case = models.ForeignKey(
        ComplianceCase, on_delete=models.PROTECT, null=True, blank=True, related_name="hits"
    )
    score = models.PositiveSmallIntegerField()
    matched_name = models.CharField(max_length=300)
    explanation = models.JSONField(default=list)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    found_at = models.DateTimeField()
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.CharField(max_length=200, blank=True, default="")
    review_note = models.TextField(blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client_id", "entry"], name="one_hit_per_entry"),
        ]
        indexes = [models.Index(fields=["status", "found_at"])]

    def __str__(self) -> str:
        return f"{self.client_id} ~ {self.matched_name} ({self.score})"


class MonitoredTransaction(models.Model):
    """A money movement compliance watches (copied from payments events, keyed by event id)."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    event_id = models.CharField(max_length=100, unique=True)
    client_id = models.UUIDField()
    kind = models.CharField(max_length=12)  # deposit | withdrawal
    amount = models.BigIntegerField()  # minor units
    currency = models.CharField(max_length=10)
    method_fingerprint = models.CharField(max_length=128, blank=True, default="")
    payer_name = models.CharField(max_length=200, blank=True, default="")
    occurred_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["client_id", "-occurred_at"], name="monitored_client_time"),
            models.Index(fields=["method_fingerprint"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} {self.currency}"


class AmlAlert(models.Model):
    """A monitoring rule fired for a client; alerts gather into an AML case."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    client_id = models.UUIDField(db_index=True)
    rule = models.CharField(max_length=50)
    severity = models.CharField(max_length=10)  # low | medium | high
    details = models.JSONField(default=dict)
    dedupe_key = models.CharField(max_length=200, unique=True)
    case = models.ForeignKey(
        ComplianceCase, on_delete=models.PROTECT, null=True, blank=True, related_name="alerts"
    )
    raised_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["rule", "raised_at"])]

    def __str__(self) -> str:
        return f"{self.rule} {self.client_id}"


class ProviderEvent(models.Model):
    """The inbox of verification-provider webhooks: each delivery recorded once, then handled."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    provider = models.CharField(max_length=20)
    event_key = models.CharField(max_length=200)
    subject = models.CharField(max_length=100, blank=True, default="")  # applicant / run id
    occurred_ms = models.BigIntegerField(null=True, blank=True)
    client_id = models.UUIDField(null=True, blank=True)
    payload = models.JSONField()
    received_at = models.DateTimeField()
    outcome = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "event_key"], name="provider_event_once"),
        ]
        indexes = [models.Index(fields=["provider", "subject", "occurred_ms"])]

    def __str__(self) -> str:
        return f"{self.provider} {self.event_key}"
