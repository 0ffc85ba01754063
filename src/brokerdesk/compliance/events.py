"""Events the compliance module emits (typed, versioned)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from brokerdesk.core.events import DomainEvent


@dataclass(frozen=True)
class KycTransitioned(DomainEvent):
    """Base of the KYC events: the client moved from one state to another (v1)."""

    stream = "compliance"
    version = 1

    client_id: UUID
    from_state: str
    to_state: str
    actor: str
    reason: str

    def aggregate_id(self) -> str:
        return str(self.client_id)


@dataclass(frozen=True)
class KycDocumentsRequested(KycTransitioned):
    """The client is asked for (more) documents."""

    type = "kyc.documents_requested"


@dataclass(frozen=True)
class KycSubmitted(KycTransitioned):
    """The client's file went to verification."""

    type = "kyc.submitted"


@dataclass(frozen=True)
class KycApproved(KycTransitioned):
    """The client is verified."""

    type = "kyc.approved"


@dataclass(frozen=True)
class KycRejected(KycTransitioned):
    """The client was refused."""

    type = "kyc.rejected"


@dataclass(frozen=True)
class KycManualReview(KycTransitioned):
    """A person must decide."""

    type = "kyc.manual_review"


@dataclass(frozen=True)
class KycRestricted(KycTransitioned):
    """The client is restricted by compliance."""

    type = "kyc.restricted"


@dataclass(frozen=True)
class KycAmlReview(KycTransitioned):
    """The client is restricted pending AML review."""

    type = "kyc.aml_review"


KYC_EVENTS: dict[str, type[KycTransitioned]] = {
    cls.type: cls
    for cls in (
        KycDocumentsRequested,
        KycSubmitted,
        KycApproved,
        KycRejected,
        KycManualReview,
        KycRestricted,
        KycAmlReview,
    )
}


@dataclass(frozen=True)
class FlagRaised(DomainEvent):
    """A compliance flag was opened on a client (v1)."""

    type = "compliance.flag_raised"
    stream = "compliance"
    version = 1

    client_id: UUID
    kind: str
    reason: str
    actor: str

    def aggregate_id(self) -> str:
        return str(self.client_id)


@dataclass(frozen=True)
class FlagCleared(DomainEvent):
    """A compliance flag was closed (v1)."""

    type = "compliance.flag_cleared"
    stream = "compliance"
    version = 1

    client_id: UUID
    kind: str
    reason: str
    actor: str

    def aggregate_id(self) -> str:
        return str(self.client_id)


@dataclass(frozen=True)
class RuleSetPublished(DomainEvent):
    """A new version of a jurisdiction's rule set was stored (v1)."""

    type = "compliance.rule_set_published"
    stream = "compliance"
    version = 1

    jurisdiction: str
    rule_set_version: int
    checksum: str

    def aggregate_id(self) -> str:
        return self.jurisdiction


@dataclass(frozen=True)
class DocumentUploaded(DomainEvent):
    """A KYC document was received (v1)."""

    type = "compliance.document_uploaded"
    stream = "compliance"
    version = 1

    client_id: UUID
    document_id: UUID
    doc_type: str

    def aggregate_id(self) -> str:
        return str(self.client_id)


@dataclass(frozen=True)
class DocumentReviewed(DomainEvent):
    """A KYC document was accepted or rejected (v1)."""

    type = "compliance.document_reviewed"
    stream = "compliance"
    version = 1

    client_id: UUID
    document_id: UUID
    doc_type: str
    status: str
    note: str = ""  # the reviewer's note for the client (a rejection always has one)

    def aggregate_id(self) -> str:
        return str(self.client_id)


@dataclass(frozen=True)
class DocumentExpiring(DomainEvent):
    """A document expires soon: notifications remind the client (v1)."""

    type = "compliance.document_expiring"
    stream = "compliance"
    version = 1

    client_id: UUID
    document_id: UUID
    doc_type: str
    expires_on: str

    def aggregate_id(self) -> str:
        return str(self.client_id)


@dataclass(frozen=True)
class DocumentExpired(DomainEvent):
    """A document passed its expiry date (v1)."""

    type = "compliance.document_expired"
    stream = "compliance"
    version = 1

    client_id: UUID
    document_id: UUID
    doc_type: str

    def aggregate_id(self) -> str:
        return str(self.client_id)


@dataclass(frozen=True)
class DocumentDeleted(DomainEvent):
    """A document's stored object was deleted (retention or request); metadata remains (v1)."""

    type = "compliance.document_deleted"
    stream = "compliance"
    version = 1

    client_id: UUID
    document_id: UUID
    reason: str

    def aggregate_id(self) -> str:
        return str(self.client_id)


@dataclass(frozen=True)
class SanctionsListLoaded(DomainEvent):
    """A new sanctions or PEP list version became active (v1): clients are re-screened."""

    type = "compliance.sanctions_list_loaded"
    stream = "compliance"
    version = 1

    source: str
    list_id: UUID
    entries: int

    def aggregate_id(self) -> str:
        return self.source


@dataclass(frozen=True)
class ScreeningHitFound(DomainEvent):
    """A client possibly matches a listed name (v1)."""

    type = "compliance.screening_hit"
    stream = "compliance"
    version = 1

    client_id: UUID
    hit_id: UUID
    score: int

    def aggregate_id(self) -> str:
        return str(self.client_id)


@dataclass(frozen=True)
class CaseOpened(DomainEvent):
    """An investigator case was opened (v1)."""

    type = "compliance.case_opened"
    stream = "compliance"
    version = 1

    client_id: UUID
    case_id: UUID
    kind: str

    def aggregate_id(self) -> str:
        return str(self.client_id)


@dataclass(frozen=True)
class CaseClosed(DomainEvent):
    """An investigator case was closed with an outcome (v1)."""

    type = "compliance.case_closed"
    stream = "compliance"
    version = 1

    client_id: UUID
    case_id: UUID
    outcome: str

    def aggregate_id(self) -> str:
        return str(self.client_id)


@dataclass(frozen=True)
class AmlAlertRaised(DomainEvent):
    """A monitoring rule fired for a client (v1)."""

    type = "aml.alert_raised"
    stream = "compliance"
    version = 1

    client_id: UUID
    alert_id: UUID
    rule: str
    severity: str

    def aggregate_id(self) -> str:
        return str(self.client_id)
