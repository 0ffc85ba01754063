"""Commands of the compliance module: rule sets, KYC transitions and flags.

Each command runs in one transaction and writes its rows, an audit entry, its outbox event and
the client's timeline together; an illegal or forbidden request raises a domain error and
changes nothing. ``by`` is a signed-in user (role-checked) or a system actor label such as
``"system:sumsub"`` (trusted code paths: provider webhooks, scheduled jobs).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from django.core import signing
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.files import File
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.urls import reverse

from brokerdesk.clients import queries as client_queries
from brokerdesk.clients.services import record_timeline
from brokerdesk.compliance import aml, providers, rules, screening
from brokerdesk.compliance import storage as doc_storage
from brokerdesk.compliance.events import (
    KYC_EVENTS,
    AmlAlertRaised,
    CaseClosed,
    CaseOpened,
    DocumentDeleted,
    DocumentExpired,
    DocumentExpiring,
    DocumentReviewed,
    DocumentUploaded,
    FlagCleared,
    FlagRaised,
    RuleSetPublished,
    SanctionsListLoaded,
    ScreeningHitFound,
)
from brokerdesk.compliance.kyc import STAFF_DECISIONS, TRANSITIONS, KycState, event_for
from brokerdesk.compliance.models import (
    AmlAlert,
    CaseNote,
    ClientFlag,
    ComplianceCase,
    Document,
    DocumentAccess,
    KycCase,
    KycTransition,
    MonitoredTransaction,
    ProviderEvent,
    RuleSet,
    SanctionsEntry,
    SanctionsList,
    ScreeningHit,
)
from brokerdesk.compliance.queries import (
    AlertView,
    DocumentView,
    FlagView,
    HitView,
    KycView,
    alert_view,
    document_view,
    expiring_documents,
    flag_view,
    hit_view,
    kyc_status,
    missing_documents,
    rule_set_for,
)
from brokerdesk.compliance.rules import RuleSetView
from brokerdesk.core import audit, clock
from brokerdesk.core.errors import (
    Conflict,
    IllegalTransition,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from brokerdesk.core.events import emit
from brokerdesk.core.money import get_currency
from brokerdesk.staff.roles import Role, actor_label, ensure_different_approver, require_role

FLAG_KINDS = (
    "aml_hold",
    "sanctions_hit",
    "pep",
    "dispute",
    "chargeback",
    "fraud_suspected",
    "documents_expired",
    "legal_hold",
)


def _is_user(by: Any) -> bool:
    return not isinstance(by, str)


def _require_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("A reason is required.", code="reason_required", field="reason")
    return reason


def _require_client(client_id: UUID | str) -> UUID:
    if not client_queries.client_exists(client_id):
        raise NotFound("No such client.", code="client_not_found", field="client_id")
    return UUID(str(client_id))


# -- rule sets ------------------------------------------------------------------------------


def publish_rule_set(data: dict[str, Any], *, by: Any, reason: str = "") -> RuleSet:
    """Store a new version of a jurisdiction's rule set; the same version twice is a no-op."""
    if _is_user(by):
        require_role(by, Role.COMPLIANCE_OFFICER)
    parsed = rules.parse(data)
    with transaction.atomic():
        existing = RuleSet.objects.filter(
            jurisdiction=parsed.jurisdiction, version=parsed.version
        ).first()
        if existing is not None:
            if existing.checksum == parsed.checksum:
                return existing
            raise Conflict(
                f"{parsed.jurisdiction} v{parsed.version} exists with other content; "
                "publish a new version instead of editing one.",
                code="rule_set_version_exists",
                field="version",
            )
        latest = (
            RuleSet.objects.filter(jurisdiction=parsed.jurisdiction)
            .order_by("-version")
            .values_list("version", flat=True)
            .first()
        )
        if latest is not None and parsed.version < latest:
            raise Conflict(
                f"{parsed.jurisdiction} is at v{latest}; versions only go up.",
                code="rule_set_version_old",
                field="version",
            )
        actor = actor_label(by)
        row = RuleSet.objects.create(
            jurisdiction=parsed.jurisdiction,
            version=parsed.version,
            name=parsed.name,
            effective_from=parsed.effective_from,
            data=data,
            checksum=parsed.checksum,
            loaded_at=clock.now(),
            loaded_by=actor,
        )
        audit.record(
            actor=actor,
            action="compliance.publish_rule_set",
            object_type="rule_set",
            object_id=f"{parsed.jurisdiction}:{parsed.version}",
            reason=reason,
            after={"checksum": parsed.checksum, "effective_from": str(parsed.effective_from)},
        )
        emit(
            RuleSetPublished(
                jurisdiction=parsed.jurisdiction,
                rule_set_version=parsed.version,
                checksum=parsed.checksum,
            )
        )
        return row


def load_bundled_rule_sets(*, by: Any = "system:rule_sets") -> list[RuleSet]:
    """Publish the rule sets shipped in ``compliance/rulesets`` (idempotent)."""
    return [publish_rule_set(data, by=by, reason="bundled rule set") for data in rules.bundled()]


# -- KYC ------------------------------------------------------------------------------------


def _locked_case(client_id: UUID) -> KycCase:
    case = KycCase.objects.select_for_update().filter(client_id=client_id).first()
    if case is not None:
        return case
    now = clock.now()
    try:
        with transaction.atomic():
            KycCase.objects.create(
                client_id=client_id, state=KycState.LEAD, opened_at=now, updated_at=now
            )
    except IntegrityError:
        pass  # created by a concurrent request: lock theirs
    return KycCase.objects.select_for_update().get(client_id=client_id)


def _check_actor(by: Any, client_id: UUID, target: KycState) -> None:
    if not _is_user(by):
        return
    if target in STAFF_DECISIONS:
        require_role(by, Role.COMPLIANCE_OFFICER)
    elif target == KycState.UNDER_VERIFICATION and (
        client_queries.client_id_for_user(by) == client_id
    ):
        return  # clients submit their own file
    else:
        require_role(by, Role.COMPLIANCE_OFFICER, Role.SUPPORT)


def transition_kyc(
    client_id: UUID | str,
    to_state: KycState | str,
    *,
    by: Any,
    reason: str,
    final: bool = False,
    provider: str | None = None,
    provider_reference: str | None = None,
) -> KycView:
    """Move the client's KYC case to ``to_state`` if the transition table allows it.

    Audited, emitted as ``kyc.<…>`` and added to the client's timeline. ``final`` marks a
    rejection that cannot be retried. Lifting a restriction or an AML review needs a different
    person from the one who imposed it (maker-checker).
    """
    reason = _require_reason(reason)
    cid = _require_client(client_id)
    try:
        target = KycState(to_state)
    except ValueError:
        raise ValidationError(
            f"Unknown KYC state {to_state!r}.", code="unknown_state", field="to_state"
        ) from None
    _check_actor(by, cid, target)
    actor = actor_label(by)
    with transaction.atomic():
        case = _locked_case(cid)
        current = KycState(case.state)
        event_type = event_for(current, target)
        if current == KycState.REJECTED and case.rejection_final:
            raise IllegalTransition(
                "The rejection was final; the client cannot retry.",
                code="rejection_final",
                field="to_state",
            )
        if target == KycState.UNDER_VERIFICATION and (provider or case.provider) == "manual":
            missing = missing_documents(cid)
            if missing:
                raise ValidationError(
                    "Documents missing: " + "; ".join(" or ".join(g) for g in missing) + ".",
                    code="documents_missing",
                    field="documents",
                    missing=missing,
                )
        if current in (KycState.RESTRICTED, KycState.AML_REVIEW) and target == KycState.APPROVED:
            imposed = (
                KycTransition.objects.filter(case=case, to_state=current)
                .order_by("-occurred_at", "-id")
                .values_list("actor", flat=True)
                .first()
            )
            if imposed and actor.startswith("user:"):
                ensure_different_approver(imposed, actor)
        now = clock.now()
        before = {"state": case.state, "rejection_final": case.rejection_final}
        case.state = target
        case.rejection_final = final if target == KycState.REJECTED else False
        case.updated_at = now
        if target == KycState.APPROVED:
            case.approved_at = now
        if provider is not None:
            case.provider = provider
        if provider_reference is not None:
            case.provider_reference = provider_reference
        case.save()
        KycTransition.objects.create(
            case=case,
            from_state=current,
            to_state=target,
            actor=actor,
            reason=reason,
            occurred_at=now,
        )
        audit.record(
            actor=actor,
            action=event_type,
            object_type="client",
            object_id=str(cid),
            reason=reason,
            before=before,
            after={"state": case.state, "rejection_final": case.rejection_final},
        )
        emit(
            KYC_EVENTS[event_type](
                client_id=cid,
                from_state=current.value,
                to_state=target.value,
                actor=actor,
                reason=reason,
            )
        )
        record_timeline(
            cid,
            kind=event_type,
            summary=f"KYC {current.value} → {target.value}: {reason}",
            data={"by": actor, "from": current.value, "to": target.value},
            occurred_at=now,
        )
        return KycView(cid, case.state, case.rejection_final, case.updated_at, case.approved_at)


def request_documents(client_id: UUID | str, *, by: Any, reason: str) -> KycView:
    """Ask the client for (more) documents."""
    return transition_kyc(client_id, KycState.DOCUMENTS_PENDING, by=by, reason=reason)


def submit_kyc(
    client_id: UUID | str,
    *,
    by: Any,
    reason: str = "submitted for verification",
    provider: str | None = None,
    provider_reference: str | None = None,
) -> KycView:
    """Send the client's file to verification (the manual provider checks required documents)."""
    return transition_kyc(
        client_id,
        KycState.UNDER_VERIFICATION,
        by=by,
        reason=reason,
        provider=provider,
        provider_reference=provider_reference,
    )


def approve_kyc(client_id: UUID | str, *, by: Any, reason: str) -> KycView:
    """Verify the client."""
    return transition_kyc(client_id, KycState.APPROVED, by=by, reason=reason)


def reject_kyc(client_id: UUID | str, *, by: Any, reason: str, final: bool = False) -> KycView:
    """Refuse the client; ``final`` forbids a retry."""
    return transition_kyc(client_id, KycState.REJECTED, by=by, reason=reason, final=final)


def refer_to_manual_review(client_id: UUID | str, *, by: Any, reason: str) -> KycView:
    """Send the file to a compliance officer."""
    return transition_kyc(client_id, KycState.MANUAL_REVIEW, by=by, reason=reason)


def restrict_client(client_id: UUID | str, *, by: Any, reason: str) -> KycView:
    """Restrict the client (withdrawals to return funds only)."""
    return transition_kyc(client_id, KycState.RESTRICTED, by=by, reason=reason)


def open_aml_review(client_id: UUID | str, *, by: Any, reason: str) -> KycView:
    """Restrict the client pending an AML review."""
    return transition_kyc(client_id, KycState.AML_REVIEW, by=by, reason=reason)


# -- flags ----------------------------------------------------------------------------------

_FLAG_ROLES: dict[str, tuple[Role, ...]] = {
    "dispute": (Role.COMPLIANCE_OFFICER, Role.FINANCE),
    "chargeback": (Role.COMPLIANCE_OFFICER, Role.FINANCE),
}


def raise_flag(
    client_id: UUID | str, kind: str, *, by: Any, reason: str, source: str = ""
) -> FlagView:
    """Open a flag on the client; an already open flag of the same kind is returned as is."""
    if kind not in FLAG_KINDS:
        raise ValidationError(
            f"Unknown flag {kind!r}; one of {', '.join(FLAG_KINDS)}.",
            code="unknown_flag",
            field="kind",
        )
    reason = _require_reason(reason)
    cid = _require_client(client_id)
    if _is_user(by):
        require_role(by, *_FLAG_ROLES.get(kind, (Role.COMPLIANCE_OFFICER,)))
    actor = actor_label(by)
    with transaction.atomic():
        existing = (
            ClientFlag.objects.select_for_update()
            .filter(client_id=cid, kind=kind, closed_at__isnull=True)
            .first()
        )
        if existing is not None:
            return flag_view(existing)
        now = clock.now()
        try:
            with transaction.atomic():
                flag = ClientFlag.objects.create(
                    client_id=cid,
                    kind=kind,
                    reason=reason,
                    source=source[:200],
                    opened_at=now,
                    opened_by=actor,
                )
        except IntegrityError:  # opened concurrently
            return flag_view(ClientFlag.objects.get(client_id=cid, kind=kind, closed_at=None))
        audit.record(
            actor=actor,
            action="compliance.flag_raised",
            object_type="client",
            object_id=str(cid),
            reason=reason,
            after={"flag": kind, "source": source},
        )
        emit(FlagRaised(client_id=cid, kind=kind, reason=reason, actor=actor))
        record_timeline(
            cid,
            kind="compliance.flag_raised",
            summary=f"Flag {kind} raised: {reason}",
            data={"by": actor, "flag": kind, "source": source},
            occurred_at=now,
        )
        return flag_view(flag)


def clear_flag(client_id: UUID | str, kind: str, *, by: Any, reason: str) -> FlagView:
    """Close the open flag of ``kind``; a person cannot clear a flag they raised themselves."""
    reason = _require_reason(reason)
    cid = _require_client(client_id)
    if _is_user(by):
        require_role(by, *_FLAG_ROLES.get(kind, (Role.COMPLIANCE_OFFICER,)))
    actor = actor_label(by)
    with transaction.atomic():
        flag = (
            ClientFlag.objects.select_for_update()
            .filter(client_id=cid, kind=kind, closed_at__isnull=True)
            .first()
        )
        if flag is None:
            raise NotFound(f"No open {kind} flag.", code="flag_not_open", field="kind")
        if actor.startswith("user:"):  # maker-checker binds people, not system jobs
            ensure_different_approver(flag.opened_by, actor)
        flag.closed_at = clock.now()
        flag.closed_by = actor
        flag.close_reason = reason
        flag.save(update_fields=["closed_at", "closed_by", "close_reason"])
        audit.record(
            actor=actor,
            action="compliance.flag_cleared",
            object_type="client",
            object_id=str(cid),
            reason=reason,
            before={"flag": kind, "opened_by": flag.opened_by},
            after={"flag": kind, "closed": True},
        )
        emit(FlagCleared(client_id=cid, kind=kind, reason=reason, actor=actor))
        record_timeline(
            cid,
            kind="compliance.flag_cleared",
            summary=f"Flag {kind} cleared: {reason}",
            data={"by": actor, "flag": kind},
            occurred_at=flag.closed_at,
        )
        return flag_view(flag)


# -- documents ------------------------------------------------------------------------------

DOCUMENT_SALT = "brokerdesk.compliance.document"
DEFAULT_URL_MAX_AGE = 300  # seconds
DOCUMENT_READERS = (Role.COMPLIANCE_OFFICER, Role.AUDITOR)
DOCUMENT_UPLOADERS = (Role.COMPLIANCE_OFFICER, Role.SUPPORT)


def url_max_age() -> int:
    """How long a signed document URL stays valid, in seconds."""
    from django.conf import settings

    return int(getattr(settings, "DOCUMENT_URL_MAX_AGE", DEFAULT_URL_MAX_AGE))


def _require_owner_or_role(by: Any, client_id: UUID, roles: tuple[Role, ...]) -> None:
    """System actors pass; a user must be the client themself or hold one of ``roles``."""
    if not _is_user(by):
        return
    if client_queries.client_id_for_user(by) == client_id:
        return
    require_role(by, *roles)


def _document_locked(document_id: UUID | str) -> Document:
    try:
        return Document.objects.select_for_update().get(pk=document_id)
    except (Document.DoesNotExist, ValueError, DjangoValidationError):
        raise NotFound(
            "No such document.", code="document_not_found", field="document_id"
        ) from None


def _check_dates(
    doc_type: str, issued_on: date | None, expires_on: date | None, rs: RuleSetView
) -> None:
    today = clock.now().date()
    if issued_on is not None and issued_on > today:
        raise ValidationError(
            "The issue date is in the future.", code="date_in_future", field="issued_on"
        )
    if expires_on is not None and expires_on < today:
        raise ValidationError(
            "The document has already expired.", code="already_expired", field="expires_on"
        )
    if issued_on and expires_on and expires_on < issued_on:
        raise ValidationError(
            "The expiry date is before the issue date.", code="invalid_dates", field="expires_on"
        )
    max_age = rs.document_max_age_days.get(doc_type)
    if max_age is not None:
        if issued_on is None:
            raise ValidationError(
                f"A {doc_type} needs its issue date.", code="required", field="issued_on"
            )
        if (today - issued_on).days > max_age:
            raise ValidationError(
                f"A {doc_type} must be at most {max_age} days old.",
                code="too_old",
                field="issued_on",
            )


def upload_document(
    client_id: UUID | str,
    *,
    doc_type: str,
    content: bytes,
    by: Any,
    filename: str = "",
    declared_content_type: str | None = None,
    issued_on: date | None = None,
    expires_on: date | None = None,
) -> DocumentView:
    """Check and store a KYC document; the bytes go to document storage, never the database.

    Accepted: JPEG, PNG and PDF identified by their magic bytes (the name and declared type
    must agree), within the size limit, without active PDF content, with plausible dates.
    """
    if doc_type not in rules.DOCUMENT_TYPES:
        raise ValidationError(
            f"Unknown document type {doc_type!r}.", code="unknown_document_type", field="doc_type"
        )
    cid = _require_client(client_id)
    _require_owner_or_role(by, cid, DOCUMENT_UPLOADERS)
    sniffed = doc_storage.sniff(content)
    doc_storage.check_declared(
        sniffed, filename=filename, declared_content_type=declared_content_type
    )
    client = client_queries.get_client(cid)
    _check_dates(doc_type, issued_on, expires_on, rule_set_for(client.jurisdiction))
    digest = hashlib.sha256(content).hexdigest()
    actor = actor_label(by)
    storage = doc_storage.document_storage()
    stored_name = ""
    try:
        with transaction.atomic():
            if Document.objects.filter(
                client_id=cid, sha256=digest, deleted_at__isnull=True
            ).exists():
                raise Conflict(
                    "This file was already uploaded.", code="duplicate_document", field="file"
                )
            doc = Document(
                client_id=cid,
                doc_type=doc_type,
                content_type=sniffed.content_type,
                size=len(content),
                sha256=digest,
                original_name=(filename or "")[-200:],
                issued_on=issued_on,
                expires_on=expires_on,
                uploaded_at=clock.now(),
                uploaded_by=actor,
            )
            stored_name = storage.save(
                f"kyc/{cid}/{doc.id}.{sniffed.extension}", ContentFile(content)
            )
            doc.storage_key = stored_name
            doc.save(force_insert=True)
            audit.record(
                actor=actor,
                action="compliance.document_uploaded",
                object_type="document",
                object_id=str(doc.id),
                after={
                    "client_id": str(cid),
                    "doc_type": doc_type,
                    "sha256": digest,
                    "size": len(content),
                },
            )
            emit(DocumentUploaded(client_id=cid, document_id=doc.id, doc_type=doc_type))
            record_timeline(
                cid,
                kind="compliance.document_uploaded",
                summary=f"Document uploaded: {doc_type}",
                data={"by": actor, "document_id": str(doc.id)},
                occurred_at=doc.uploaded_at,
            )
    except BaseException:
        if stored_name:  # the row was not written: do not leave an orphan object behind
            storage.delete(stored_name)
        raise
    return document_view(doc)


def review_document(
    document_id: UUID | str, *, accepted: bool, by: Any, note: str = ""
) -> DocumentView:
    """Accept or reject a received document (a compliance officer, or a provider)."""
    if _is_user(by):
        require_role(by, Role.COMPLIANCE_OFFICER)
    actor = actor_label(by)
    with transaction.atomic():
        doc = _document_locked(document_id)
        if doc.status != Document.Status.RECEIVED:
            raise IllegalTransition(
                f"A {doc.status} document cannot be reviewed.",
                code="not_reviewable",
                field="document_id",
            )
        if not accepted and not note.strip():
            raise ValidationError(
                "A rejection needs a note for the client.", code="reason_required", field="note"
            )
        doc.status = Document.Status.ACCEPTED if accepted else Document.Status.REJECTED
        doc.reviewed_at, doc.reviewed_by, doc.review_note = clock.now(), actor, note
        doc.save(update_fields=["status", "reviewed_at", "reviewed_by", "review_note"])
        audit.record(
            actor=actor,
            action="compliance.document_reviewed",
            object_type="document",
            object_id=str(doc.id),
            reason=note,
            before={"status": Document.Status.RECEIVED},
            after={"status": doc.status},
        )
        emit(
            DocumentReviewed(
                client_id=doc.client_id,
                document_id=doc.id,
                doc_type=doc.doc_type,
                status=doc.status,
                note=note,
            )
        )
        record_timeline(
            doc.client_id,
            kind="compliance.document_reviewed",
            summary=f"Document {doc.doc_type} {doc.status}" + (f": {note}" if note else ""),
            data={"by": actor, "document_id": str(doc.id)},
        )
        if accepted and not missing_documents(doc.client_id):
            _clear_system_flag(doc.client_id, "documents_expired", "documents renewed")
        return document_view(doc)


def _log_access(doc: Document, action: str, actor: str, detail: str = "") -> None:
    DocumentAccess.objects.create(
        document=doc, action=action, actor=actor, occurred_at=clock.now(), detail=detail[:200]
    )


def document_url(document_id: UUID | str, *, by: Any, purpose: str = "view") -> str:
    """A short-lived signed URL for one document; issuing it is logged.

    Compliance officers and auditors may read any document; a client only their own.
    """
    actor = actor_label(by)
    with transaction.atomic():
        doc = _document_locked(document_id)
        try:
            _require_owner_or_role(by, doc.client_id, DOCUMENT_READERS)
        except PermissionDenied:
            raise NotFound(
                "No such document.", code="document_not_found", field="document_id"
            ) from None
        if doc.deleted_at is not None:
            raise NotFound(
                "The document was deleted under the retention policy.",
                code="document_deleted",
                field="document_id",
            )
        token = signing.dumps({"d": str(doc.id), "a": actor}, salt=DOCUMENT_SALT, compress=True)
        _log_access(doc, "url_issued", actor, purpose)
    return reverse("api:compliance_document_download", kwargs={"token": token})


@dataclass(frozen=True)
class OpenedDocument:
    """A document opened through a signed URL: its metadata and a readable file."""

    document: DocumentView
    file: File[bytes]
    filename: str


def open_document(token: str) -> OpenedDocument:
    """Verify a signed URL's token (signature and age), log the download, open the bytes."""
    try:
        payload = signing.loads(token, salt=DOCUMENT_SALT, max_age=url_max_age())
    except signing.SignatureExpired:
        raise PermissionDenied(
            "This link has expired.", code="url_expired", field="token"
        ) from None
    except signing.BadSignature:
        raise PermissionDenied(
            "This link is not valid.", code="bad_signature", field="token"
        ) from None
    with transaction.atomic():
        doc = _document_locked(payload["d"])
        if doc.deleted_at is not None or not doc.storage_key:
            _log_access(doc, "refused", payload["a"], "deleted")
            raise NotFound(
                "The document was deleted under the retention policy.",
                code="document_deleted",
                field="document_id",
            )
        _log_access(doc, "downloaded", payload["a"])
    handle = doc_storage.document_storage().open(doc.storage_key, "rb")
    return OpenedDocument(document_view(doc), handle, f"{doc.doc_type}-{doc.id}.{_ext(doc)}")


def _ext(doc: Document) -> str:
    return doc.storage_key.rsplit(".", 1)[-1] if "." in doc.storage_key else "bin"


def _clear_system_flag(client_id: UUID, kind: str, reason: str) -> None:
    if ClientFlag.objects.filter(client_id=client_id, kind=kind, closed_at__isnull=True).exists():
        clear_flag(client_id, kind, by="system:documents", reason=reason)


def remind_expiring_documents(*, today: date | None = None) -> int:
    """Emit ``compliance.document_expiring`` once per document entering its warning window."""
    day = today or clock.now().date()
    sent = 0
    horizon = 366
    for view in expiring_documents(within_days=horizon, today=day):
        jurisdiction = client_queries.get_client(view.client_id).jurisdiction
        warn = rule_set_for(jurisdiction).document_expiry_warning_days
        if view.expires_on is None or (view.expires_on - day).days > warn:
            continue
        with transaction.atomic():
            doc = _document_locked(view.id)
            if doc.expiry_reminded_at is not None:
                continue
            doc.expiry_reminded_at = clock.now()
            doc.save(update_fields=["expiry_reminded_at"])
            emit(
                DocumentExpiring(
                    client_id=doc.client_id,
                    document_id=doc.id,
                    doc_type=doc.doc_type,
                    expires_on=str(doc.expires_on),
                )
            )
            record_timeline(
                doc.client_id,
                kind="compliance.document_expiring",
                summary=f"{doc.doc_type} expires on {doc.expires_on}: reminder sent",
                data={"document_id": str(doc.id)},
            )
            sent += 1
    return sent


def expire_documents(*, today: date | None = None) -> int:
    """Mark documents past their expiry date; flag clients left without a required document."""
    day = today or clock.now().date()
    ids = list(
        Document.objects.filter(
            status__in=(Document.Status.RECEIVED, Document.Status.ACCEPTED), expires_on__lt=day
        )
        .order_by("id")
        .values_list("id", flat=True)
    )
    for document_id in ids:
        with transaction.atomic():
            doc = _document_locked(document_id)
            before = doc.status
            doc.status = Document.Status.EXPIRED
            doc.save(update_fields=["status"])
            audit.record(
                actor="system:documents",
                action="compliance.document_expired",
                object_type="document",
                object_id=str(doc.id),
                before={"status": before},
                after={"status": doc.status},
            )
            emit(
                DocumentExpired(client_id=doc.client_id, document_id=doc.id, doc_type=doc.doc_type)
            )
            record_timeline(
                doc.client_id,
                kind="compliance.document_expired",
                summary=f"{doc.doc_type} expired on {doc.expires_on}",
                data={"document_id": str(doc.id)},
            )
            if missing_documents(doc.client_id):
                raise_flag(
                    doc.client_id,
                    "documents_expired",
                    by="system:documents",
                    reason=f"{doc.doc_type} expired on {doc.expires_on}",
                    source=f"document:{doc.id}",
                )
    return len(ids)


def delete_document(document_id: UUID | str, *, by: Any, reason: str) -> DocumentView:
    """Delete a document's stored bytes; its metadata, access log and audit trail remain.

    Refused while the client is under a legal hold.
    """
    reason = _require_reason(reason)
    if _is_user(by):
        require_role(by, Role.COMPLIANCE_OFFICER)
    actor = actor_label(by)
    with transaction.atomic():
        doc = _document_locked(document_id)
        if doc.deleted_at is not None:
            return document_view(doc)
        if ClientFlag.objects.filter(
            client_id=doc.client_id, kind="legal_hold", closed_at__isnull=True
        ).exists():
            raise Conflict(
                "The client is under a legal hold; records cannot be deleted.",
                code="legal_hold",
                field="document_id",
            )
        key, before_status = doc.storage_key, doc.status
        doc.status = Document.Status.DELETED
        doc.deleted_at = clock.now()
        doc.deletion_reason = reason
        doc.storage_key = ""
        doc.original_name = ""
        doc.save(
            update_fields=[
                "status",
                "deleted_at",
                "deletion_reason",
                "storage_key",
                "original_name",
            ]
        )
        audit.record(
            actor=actor,
            action="compliance.document_deleted",
            object_type="document",
            object_id=str(doc.id),
            reason=reason,
            before={"status": before_status, "storage_key": key},
            after={"status": doc.status},
        )
        emit(DocumentDeleted(client_id=doc.client_id, document_id=doc.id, reason=reason))
        if key:
            storage = doc_storage.document_storage()
            transaction.on_commit(lambda: storage.delete(key))
        return document_view(doc)


def apply_retention(*, now: datetime | None = None) -> int:
    """Delete the documents of clients whose relationship ended longer ago than the rule set
    keeps records (``retention_years``), unless a legal hold is open. Returns how many."""
    moment = now or clock.now()
    deleted = 0
    for client_id, jurisdiction, ended_at in client_queries.ended_relationships(
        ended_before=moment
    ):
        years = rule_set_for(jurisdiction).retention_years
        try:
            keep_until = ended_at.replace(year=ended_at.year + years)
        except ValueError:  # 29 February
            keep_until = ended_at.replace(year=ended_at.year + years, day=28)
        if keep_until > moment:
            continue
        if ClientFlag.objects.filter(
            client_id=client_id, kind="legal_hold", closed_at__isnull=True
        ).exists():
            continue
        for document_id in Document.objects.filter(
            client_id=client_id, deleted_at__isnull=True
        ).values_list("id", flat=True):
            delete_document(
                document_id,
                by="system:retention",
                reason=f"retention: {years} years after the relationship ended",
            )
            deleted += 1
    return deleted


# -- sanctions screening --------------------------------------------------------------------

_index_cache: dict[str, Any] = {"key": None, "index": None, "ids": []}


def _active_index() -> tuple[screening.Index, list[int]]:
    """The in-memory index over every active list (rebuilt when the active lists change)."""
    key = tuple(
        SanctionsList.objects.filter(active=True).order_by("id").values_list("id", flat=True)
    )
    if _index_cache["key"] != key:
        rows = SanctionsEntry.objects.filter(sanctions_list__active=True).order_by("id")
        entries, ids = [], []
        for row in rows.iterator(chunk_size=10_000):
            entries.append(
                screening.ListEntry(
                    external_id=row.external_id,
                    schema=row.schema,
                    name=row.name,
                    aliases=tuple(row.aliases),
                    birth_years=tuple(row.birth_years),
                    countries=tuple(row.countries),
                    programs=tuple(row.programs),
                )
            )
            ids.append(row.pk)
        _index_cache.update(key=key, index=screening.Index.build(entries), ids=ids)
    return _index_cache["index"], _index_cache["ids"]


def load_sanctions_list(
    source: str, *, fmt: str, content: str, by: Any, alt_content: str = "", rescreen: bool = True
) -> tuple[SanctionsList, int]:
    """Load a list version (``fmt``: ``ofac_csv`` or ``ftm_json``) and make it the active one.

    The same content twice is a no-op. A new version re-screens every client (``rescreen``);
    returns the list and the number of new hits.
    """
    if _is_user(by):
        require_role(by, Role.COMPLIANCE_OFFICER)
    if fmt == "ofac_csv":
        entries = screening.parse_ofac_sdn(content, alt_content)
    elif fmt == "ftm_json":
        entries = screening.parse_ftm(screening.iter_lines(content))
    else:
        raise ValidationError(
            "The format is ofac_csv or ftm_json.", code="unknown_format", field="fmt"
        )
    if not entries:
        raise ValidationError("The list has no entries.", code="empty_list", field="content")
    digest = hashlib.sha256((content + "\0" + alt_content).encode()).hexdigest()
    actor = actor_label(by)
    with transaction.atomic():
        existing = SanctionsList.objects.filter(source=source, checksum=digest).first()
        if existing is not None and existing.active:
            return existing, 0
        previous = SanctionsList.objects.filter(source=source, active=True).first()
        SanctionsList.objects.filter(source=source, active=True).update(active=False)
        if existing is not None:  # an older version comes back
            existing.active = True
            existing.save(update_fields=["active"])
            row = existing
        else:
            row = SanctionsList.objects.create(
                source=source,
                format=fmt,
                checksum=digest,
                entry_count=len(entries),
                loaded_at=clock.now(),
                loaded_by=actor,
            )
            SanctionsEntry.objects.bulk_create(
                [
                    SanctionsEntry(
                        sanctions_list=row,
                        external_id=e.external_id,
                        schema=e.schema,
                        name=e.name[:300],
                        aliases=list(e.aliases),
                        birth_years=list(e.birth_years),
                        countries=list(e.countries),
                        programs=list(e.programs),
                    )
                    for e in {e.external_id: e for e in entries}.values()
                ],
                batch_size=5000,
            )
        audit.record(
            actor=actor,
            action="compliance.sanctions_list_loaded",
            object_type="sanctions_list",
            object_id=str(row.id),
            after={"source": source, "checksum": digest, "entries": row.entry_count},
        )
        emit(SanctionsListLoaded(source=source, list_id=row.id, entries=row.entry_count))
    if not rescreen:
        return row, 0
    changed = _changed_entries(previous, row)
    if len(changed) < client_queries.client_count():
        return row, screen_entries(changed)  # few changes: screen them against every client
    return row, rescreen_all_clients()  # many: screen every client against every list


def _subject(client: Any) -> screening.Subject:
    return screening.Subject(
        name=client.display_name,
        schema="entity" if client.kind == "corporate" else "person",
        birth_date=client.date_of_birth,
        countries=tuple(c for c in (client.country, client.nationality) if c),
    )


def screen_client(client_id: UUID | str, *, by: Any = "system:screening") -> list[HitView]:
    """Screen one client against the active lists; new possible matches open a case and flag
    the client (``sanctions_hit``) until a compliance officer reviews them."""
    client = client_queries.get_client(client_id)
    index, ids = _active_index()
    matches = [(ids[m.entry_index], m) for m in index.search(_subject(client))]
    return _save_hits(client, matches, actor=actor_label(by), mark_screened=True)


def _save_hits(
    client: Any,
    matches: list[tuple[int, screening.Match]],
    *,
    actor: str,
    mark_screened: bool,
) -> list[HitView]:
    """Record the matches not seen before (same list source and listed id) as open hits."""
    with transaction.atomic():
        case = _locked_case(client.id)
        if mark_screened:
            case.last_screened_at = clock.now()
            case.save(update_fields=["last_screened_at"])
        if not matches:
            return []
        known = set(
            ScreeningHit.objects.filter(client_id=client.id).values_list(
                "entry__sanctions_list__source", "entry__external_id"
            )
        )
        listed = {
            pk: (source, external_id)
            for pk, source, external_id in SanctionsEntry.objects.filter(
                pk__in=[entry_id for entry_id, _ in matches]
            ).values_list("pk", "sanctions_list__source", "external_id")
        }
        new_hits: list[ScreeningHit] = []
        for entry_id, match in matches:
            if listed[entry_id] in known:
                continue  # already raised (and perhaps reviewed) for this listed person
            known.add(listed[entry_id])
            new_hits.append(
                ScreeningHit(
                    client_id=client.id,
                    entry_id=entry_id,
                    score=match.score,
                    matched_name=match.matched_name[:300],
                    explanation=list(match.explanation),
                    found_at=clock.now(),
                )
            )
        if not new_hits:
            return []
        investigation = _open_case(
            client.id, "sanctions", by=actor, summary=f"Possible list match: {client.display_name}"
        )
        for hit in new_hits:
            hit.case = investigation
            hit.save(force_insert=True)
            audit.record(
                actor=actor,
                action="compliance.screening_hit",
                object_type="client",
                object_id=str(client.id),
                after={"entry": hit.matched_name, "score": hit.score, "why": hit.explanation},
            )
            emit(ScreeningHitFound(client_id=client.id, hit_id=hit.id, score=hit.score))
        raise_flag(  # the screening engine raises it, whoever asked for the run
            client.id,
            "sanctions_hit",
            by="system:screening",
            reason=f"{len(new_hits)} possible list match(es), best score "
            f"{max(h.score for h in new_hits)}",
            source=f"case:{investigation.id}",
        )
        return [hit_view(h) for h in new_hits]


def _fingerprint(row: SanctionsEntry) -> tuple[Any, ...]:
    return (
        row.schema,
        row.name,
        tuple(sorted(row.aliases)),
        tuple(row.birth_years),
        tuple(row.countries),
    )


def _changed_entries(previous: SanctionsList | None, current: SanctionsList) -> list[int]:
    """Entries of ``current`` that are new or different from ``previous`` (same listed id)."""
    before: dict[str, tuple[Any, ...]] = {}
    if previous is not None:
        for row in SanctionsEntry.objects.filter(sanctions_list=previous).iterator(10_000):
            before[row.external_id] = _fingerprint(row)
    return [
        row.pk
        for row in SanctionsEntry.objects.filter(sanctions_list=current).iterator(10_000)
        if before.get(row.external_id) != _fingerprint(row)
    ]


def screen_entries(entry_ids: list[int]) -> int:
    """Delta re-screening: match new or changed list entries against every client.

    Builds an index of client names and searches it with each entry's names, then scores
    each candidate from the client's side (birth year, country), as ``screen_client`` would.
    """
    rows = list(SanctionsEntry.objects.filter(pk__in=entry_ids).order_by("pk"))
    if not rows:
        return 0
    subjects: list[screening.Subject] = []
    people: list[screening.ListEntry] = []
    for client_id, kind, name, born, country, nationality in client_queries.screening_rows():
        subject = screening.Subject(
            name=name,
            schema="entity" if kind == "corporate" else "person",
            birth_date=born,
            countries=tuple(c for c in (country, nationality) if c),
        )
        subjects.append(subject)
        people.append(screening.ListEntry(str(client_id), subject.schema, name))
    clients_index = screening.Index.build(people)
    found: dict[str, list[tuple[int, screening.Match]]] = {}
    for row in rows:
        listed = screening.ListEntry(
            row.external_id,
            row.schema,
            row.name,
            tuple(row.aliases),
            tuple(row.birth_years),
            tuple(row.countries),
        )
        for name in (row.name, *row.aliases):
            probe = screening.Subject(name, schema=row.schema)
            for m in clients_index.search(probe, threshold=screening.HIT_THRESHOLD - 25, limit=50):
                scored = screening.explain(
                    listed, m.entry_index, name, m.name_score, subjects[m.entry_index]
                )
                if scored.score >= screening.HIT_THRESHOLD:
                    found.setdefault(people[m.entry_index].external_id, []).append((row.pk, scored))
    hits = 0
    for client_id, matches in found.items():
        best: dict[int, screening.Match] = {}
        for entry_id, match in matches:
            if entry_id not in best or match.score > best[entry_id].score:
                best[entry_id] = match
        client = client_queries.get_client(client_id)
        hits += len(
            _save_hits(client, list(best.items()), actor="system:screening", mark_screened=False)
        )
    return hits


def rescreen_all_clients(*, batch_size: int = 1000) -> int:
    """Screen every client against the active lists (after a list changes); returns new hits."""
    found = 0
    for chunk in client_queries.client_ids_in_batches(batch_size):
        for client_id in chunk:
            found += len(screen_client(client_id))
    return found


def rescreen_due(*, now: datetime | None = None) -> int:
    """Screen the clients whose last screening is older than their rule set's frequency."""
    moment = now or clock.now()
    screened = 0
    last = dict(KycCase.objects.values_list("client_id", "last_screened_at"))
    for chunk in client_queries.client_ids_in_batches(1000, with_jurisdiction=True):
        for client_id, jurisdiction in chunk:
            every = rule_set_for(jurisdiction).rescreen_every_days
            when = last.get(client_id)
            if when is None or (moment - when).days >= every:
                screen_client(client_id)
                screened += 1
    return screened


def resolve_hit(hit_id: UUID | str, *, confirmed: bool, by: Any, note: str) -> HitView:
    """A compliance officer confirms or dismisses a possible match. When no open or confirmed
    hit remains, the flag is cleared and the case closed as a false positive."""
    note = _require_reason(note)
    if _is_user(by):
        require_role(by, Role.COMPLIANCE_OFFICER)
    actor = actor_label(by)
    with transaction.atomic():
        hit = ScreeningHit.objects.select_for_update().filter(pk=hit_id).first()
        if hit is None:
            raise NotFound("No such hit.", code="hit_not_found", field="hit_id")
        if hit.status != ScreeningHit.Status.OPEN:
            raise IllegalTransition(
                f"The hit is already {hit.status}.", code="hit_resolved", field="hit_id"
            )
        hit.status = ScreeningHit.Status.CONFIRMED if confirmed else ScreeningHit.Status.DISMISSED
        hit.reviewed_at, hit.reviewed_by, hit.review_note = clock.now(), actor, note
        hit.save(update_fields=["status", "reviewed_at", "reviewed_by", "review_note"])
        audit.record(
            actor=actor,
            action="compliance.screening_hit_resolved",
            object_type="client",
            object_id=str(hit.client_id),
            reason=note,
            before={"status": "open"},
            after={"status": hit.status, "entry": hit.matched_name},
        )
        record_timeline(
            hit.client_id,
            kind="compliance.screening_hit_resolved",
            summary=f"List match {hit.matched_name!r} {hit.status}",
            data={"by": actor, "score": hit.score},
        )
        remaining = ScreeningHit.objects.filter(client_id=hit.client_id).exclude(
            status=ScreeningHit.Status.DISMISSED
        )
        if not remaining.exists():
            if ClientFlag.objects.filter(
                client_id=hit.client_id, kind="sanctions_hit", closed_at__isnull=True
            ).exists():
                clear_flag(hit.client_id, "sanctions_hit", by=by, reason=f"dismissed: {note}")
            if hit.case_id:
                close_case(hit.case_id, by=by, outcome="false_positive", reason=note)
        elif confirmed and hit.case_id:
            add_case_note(hit.case_id, by=by, text=f"Match confirmed: {hit.matched_name}. {note}")
        return hit_view(hit)


# -- investigator cases ---------------------------------------------------------------------

CASE_OUTCOMES = ("confirmed_risk", "false_positive", "valuable_alert", "sar_filed")


def _open_case(client_id: UUID, kind: str, *, by: str, summary: str) -> ComplianceCase:
    existing = (
        ComplianceCase.objects.select_for_update()
        .filter(client_id=client_id, kind=kind)
        .exclude(status=ComplianceCase.Status.CLOSED)
        .first()
    )
    if existing is not None:
        return existing
    case = ComplianceCase.objects.create(
        client_id=client_id, kind=kind, summary=summary[:300], opened_at=clock.now(), opened_by=by
    )
    audit.record(
        actor=by,
        action="compliance.case_opened",
        object_type="case",
        object_id=str(case.id),
        after={"client_id": str(client_id), "kind": kind, "summary": summary},
    )
    emit(CaseOpened(client_id=client_id, case_id=case.id, kind=kind))
    record_timeline(
        client_id,
        kind="compliance.case_opened",
        summary=f"{kind.upper()} case opened: {summary}",
        data={"case_id": str(case.id)},
    )
    return case


def _locked_compliance_case(case_id: UUID | str) -> ComplianceCase:
    case = ComplianceCase.objects.select_for_update().filter(pk=case_id).first()
    if case is None:
        raise NotFound("No such case.", code="case_not_found", field="case_id")
    return case


def add_case_note(case_id: UUID | str, *, by: Any, text: str) -> None:
    """Append an investigator's note to a case."""
    text = _require_reason(text)
    if _is_user(by):
        require_role(by, Role.COMPLIANCE_OFFICER)
    actor = actor_label(by)
    with transaction.atomic():
        case = _locked_compliance_case(case_id)
        CaseNote.objects.create(case=case, author=actor, text=text, written_at=clock.now())
        if case.status == ComplianceCase.Status.OPEN and actor.startswith("user:"):
            case.status = ComplianceCase.Status.INVESTIGATING
            case.assignee = case.assignee or actor
            case.save(update_fields=["status", "assignee"])
        audit.record(
            actor=actor,
            action="compliance.case_note",
            object_type="case",
            object_id=str(case.id),
            after={"text": text},
        )


def close_case(case_id: UUID | str, *, by: Any, outcome: str, reason: str) -> None:
    """Close a case with its outcome (confirmed_risk, false_positive, valuable_alert, sar_filed)."""
    reason = _require_reason(reason)
    if outcome not in CASE_OUTCOMES:
        raise ValidationError(
            f"The outcome is one of {', '.join(CASE_OUTCOMES)}.",
            code="unknown_outcome",
            field="outcome",
        )
    if _is_user(by):
        require_role(by, Role.COMPLIANCE_OFFICER)
    actor = actor_label(by)
    with transaction.atomic():
        case = _locked_compliance_case(case_id)
        if case.status == ComplianceCase.Status.CLOSED:
            raise IllegalTransition("The case is closed.", code="case_closed", field="case_id")
        before = case.status
        case.status, case.outcome = ComplianceCase.Status.CLOSED, outcome
        case.closed_at, case.closed_by = clock.now(), actor
        case.save(update_fields=["status", "outcome", "closed_at", "closed_by"])
        CaseNote.objects.create(
            case=case, author=actor, text=f"Closed ({outcome}): {reason}", written_at=clock.now()
        )
        audit.record(
            actor=actor,
            action="compliance.case_closed",
            object_type="case",
            object_id=str(case.id),
            reason=reason,
            before={"status": before},
            after={"status": "closed", "outcome": outcome},
        )
        emit(CaseClosed(client_id=case.client_id, case_id=case.id, outcome=outcome))
        record_timeline(
            case.client_id,
            kind="compliance.case_closed",
            summary=f"{case.kind.upper()} case closed: {outcome}",
            data={"by": actor, "case_id": str(case.id)},
        )


# -- AML transaction monitoring -------------------------------------------------------------

MONITORED_KINDS = ("deposit", "withdrawal")


def record_transaction(
    event_id: str,
    *,
    client_id: UUID | str,
    kind: str,
    amount: int,
    currency: str,
    occurred_at: datetime,
    method_fingerprint: str = "",
    payer_name: str = "",
) -> list[AlertView]:
    """Record a deposit or withdrawal (once per ``event_id``) and run the monitoring rules.

    Returns the alerts raised. High-severity alerts put the client on ``aml_hold`` and, where
    the KYC table allows it, into ``aml_review``.
    """
    if kind not in MONITORED_KINDS:
        raise ValidationError("kind is deposit or withdrawal.", code="unknown_kind", field="kind")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ValidationError(
            "Amounts are positive whole minor units.", code="not_integer", field="amount"
        )
    currency = get_currency(currency).code
    cid = _require_client(client_id)
    with transaction.atomic():
        if MonitoredTransaction.objects.filter(event_id=event_id).exists():
            return []
        tx = MonitoredTransaction.objects.create(
            event_id=event_id,
            client_id=cid,
            kind=kind,
            amount=amount,
            currency=currency,
            occurred_at=occurred_at,
            method_fingerprint=method_fingerprint[:128],
            payer_name=payer_name[:200],
        )
        client = client_queries.get_client(cid)
        thresholds = rule_set_for(client.jurisdiction).aml
        fired = aml.evaluate(tx, client, thresholds)
        return [_raise_alert(cid, finding) for finding in fired]


def _raise_alert(client_id: UUID, finding: aml.Finding) -> AlertView:
    existing = AmlAlert.objects.filter(dedupe_key=finding.dedupe_key).first()
    if existing is not None:
        return alert_view(existing)
    case = _open_case(
        client_id, "aml", by="system:aml", summary=f"AML alert: {finding.rule} ({finding.severity})"
    )
    alert = AmlAlert.objects.create(
        client_id=client_id,
        rule=finding.rule,
        severity=finding.severity,
        details=finding.details,
        dedupe_key=finding.dedupe_key,
        case=case,
        raised_at=clock.now(),
    )
    audit.record(
        actor="system:aml",
        action="aml.alert_raised",
        object_type="client",
        object_id=str(client_id),
        reason=finding.summary,
        after={"rule": finding.rule, "severity": finding.severity, "details": finding.details},
    )
    emit(
        AmlAlertRaised(
            client_id=client_id, alert_id=alert.id, rule=finding.rule, severity=finding.severity
        )
    )
    record_timeline(
        client_id,
        kind="aml.alert_raised",
        summary=f"AML alert {finding.rule} ({finding.severity}): {finding.summary}",
        data={"alert_id": str(alert.id)},
    )
    if finding.severity == "high":
        raise_flag(client_id, "aml_hold", by="system:aml", reason=finding.summary)
        state = KycState(kyc_status(client_id).state)
        if KycState.AML_REVIEW in TRANSITIONS.get(state, {}):
            transition_kyc(client_id, KycState.AML_REVIEW, by="system:aml", reason=finding.summary)
    return alert_view(alert)


# -- verification providers' webhooks -------------------------------------------------------


def _store_provider_event(
    provider: str,
    event_key: str,
    payload: dict[str, Any],
    *,
    subject: str,
    occurred_ms: int | None,
    client_id: UUID | None,
) -> ProviderEvent | None:
    """Record the delivery in the inbox; ``None`` when it was already recorded."""
    try:
        with transaction.atomic():
            return ProviderEvent.objects.create(
                provider=provider,
                event_key=event_key[:200],
                subject=subject[:100],
                occurred_ms=occurred_ms,
                client_id=client_id,
                payload=payload,
                received_at=clock.now(),
            )
    except IntegrityError:
        return None


def _apply_outcome(
    row: ProviderEvent, outcome: providers.Outcome, *, provider: str, reference: str
) -> str:
    if row.client_id is None:
        return "unknown_client"
    if outcome.target is None:
        return "ignored"
    try:
        with transaction.atomic():
            transition_kyc(
                row.client_id,
                outcome.target,
                by=f"system:{provider}",
                reason=outcome.reason,
                final=outcome.final,
                provider=provider,
                provider_reference=reference,
            )
    except IllegalTransition as error:
        return f"illegal:{error.details.get('from_state', error.code)}"
    return f"moved:{outcome.target.value}"


def _parse_json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise ValidationError("The body is not JSON.", code="invalid_json", field="body") from None
    if not isinstance(data, dict):
        raise ValidationError("The body is not an object.", code="invalid_json", field="body")
    return data


def receive_sumsub_webhook(body: bytes, headers: Mapping[str, str]) -> str:
    """Verify, record once and apply a Sumsub webhook; returns what happened.

    Deliveries repeat (deduplicated on applicantId + type + createdAtMs) and may arrive out
    of order: an event older than one already applied for the applicant is recorded, not applied.
    """
    providers.verify_sumsub(
        body,
        headers.get("X-Payload-Digest"),
        headers.get("X-Payload-Digest-Alg"),
        providers.secret("SUMSUB_WEBHOOK_SECRET"),
    )
    payload = _parse_json(body)
    applicant = str(payload.get("applicantId", ""))
    created_ms = payload.get("createdAtMs")
    occurred = int(str(created_ms)) if str(created_ms or "").isdigit() else None
    external = str(payload.get("externalUserId", ""))
    client_id = UUID(external) if client_queries.client_exists(external) else None
    with transaction.atomic():
        row = _store_provider_event(
            "sumsub",
            f"{applicant}:{payload.get('type', '')}:{created_ms}",
            payload,
            subject=applicant,
            occurred_ms=occurred,
            client_id=client_id,
        )
        if row is None:
            return "duplicate"
        later = ProviderEvent.objects.filter(
            provider="sumsub", subject=applicant, occurred_ms__gt=occurred or 0
        )
        if occurred is not None and later.filter(outcome__startswith="moved:").exists():
            row.outcome = "stale"  # a newer result was already applied
            row.save(update_fields=["outcome"])
            return row.outcome
        row.outcome = _apply_outcome(
            row, providers.sumsub_outcome(payload), provider="sumsub", reference=applicant
        )
        row.save(update_fields=["outcome"])
        if row.outcome.startswith("moved:") and occurred is not None:
            # newer events that arrived first and could not apply yet: apply them in order
            for waiting in later.filter(outcome__startswith="illegal:").order_by("occurred_ms"):
                waiting.outcome = _apply_outcome(
                    waiting,
                    providers.sumsub_outcome(waiting.payload),
                    provider="sumsub",
                    reference=applicant,
                )
                waiting.save(update_fields=["outcome"])
        return row.outcome


def receive_onfido_webhook(body: bytes, headers: Mapping[str, str]) -> str:
    """Verify, record once and apply an Onfido webhook; returns what happened.

    The client is the one whose KYC case references the workflow run (``provider_reference``).
    """
    providers.verify_onfido(
        body, headers.get("X-SHA2-Signature"), providers.secret("ONFIDO_WEBHOOK_TOKEN")
    )
    payload = _parse_json(body)
    envelope = payload.get("payload") or {}
    obj = envelope.get("object") or {}
    object_id = str(obj.get("id", ""))
    client_id = (
        KycCase.objects.filter(provider="onfido", provider_reference=object_id)
        .values_list("client_id", flat=True)
        .first()
    )
    with transaction.atomic():
        row = _store_provider_event(
            "onfido",
            f"{envelope.get('action', '')}:{object_id}:{obj.get('status', '')}:"
            f"{obj.get('completed_at_iso8601', '')}",
            payload,
            subject=object_id,
            occurred_ms=None,
            client_id=client_id,
        )
        if row is None:
            return "duplicate"
        row.outcome = _apply_outcome(
            row, providers.onfido_outcome(payload), provider="onfido", reference=object_id
        )
        row.save(update_fields=["outcome"])
        return row.outcome
