"""The compliance API: KYC state and decisions, flags, the policy, and documents.

Staff roles are checked on every endpoint (and again in the services); a client sees only
their own KYC state and documents.
"""

from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

from django.http import FileResponse, HttpRequest
from ninja import Field, File, Form, Router, Schema, Status
from ninja.files import UploadedFile

from brokerdesk.clients.api import visible_client
from brokerdesk.compliance import queries, services
from brokerdesk.compliance import storage as doc_storage
from brokerdesk.staff.api import SessionUser, domain_errors, staff_only
from brokerdesk.staff.roles import Role

router = Router(tags=["compliance"])
session = SessionUser()
READERS = (Role.COMPLIANCE_OFFICER, Role.SUPPORT, Role.FINANCE, Role.AUDITOR, Role.DEALING)


class TransitionOut(Schema):
    from_state: str
    to_state: str
    actor: str
    reason: str
    occurred_at: datetime


class KycOut(Schema):
    client_id: UUID
    state: str
    rejection_final: bool
    updated_at: datetime | None
    approved_at: datetime | None
    history: list[TransitionOut] = []


class TransitionIn(Schema):
    to_state: str
    reason: str
    final: bool = False


class DecisionOut(Schema):
    allowed: bool
    action: str
    reason_code: str
    reason: str
    kyc_state: str
    jurisdiction: str
    rule_set_version: int | None
    limit_remaining: int | None
    currency: str | None


class FlagIn(Schema):
    kind: str
    reason: str


class FlagOut(Schema):
    id: UUID
    kind: str
    reason: str
    source: str
    opened_at: datetime
    opened_by: str
    closed_at: datetime | None
    closed_by: str


def _kyc(client_id: UUID, *, with_history: bool) -> dict[str, Any]:
    data = dict(queries.kyc_status(client_id).__dict__)
    data["history"] = [t.__dict__ for t in queries.kyc_history(client_id)] if with_history else []
    return data


@router.get("/clients/{client_id}/kyc", response=KycOut, auth=session)
@domain_errors
def read_kyc(request: HttpRequest, client_id: UUID) -> Any:
    """KYC state; staff also see the history with actors and reasons."""
    from brokerdesk.staff.roles import is_staff_member

    visible_client(request, client_id)
    return _kyc(client_id, with_history=is_staff_member(request.user))


@router.post("/clients/{client_id}/kyc/submit", response=KycOut, auth=session)
@domain_errors
def submit(request: HttpRequest, client_id: UUID) -> Any:
    """The client (or support) sends the file to verification."""
    visible_client(request, client_id)
    services.submit_kyc(client_id, by=request.user)
    return _kyc(client_id, with_history=False)


@router.post(
    "/clients/{client_id}/kyc/transitions",
    response=KycOut,
    auth=staff_only(Role.COMPLIANCE_OFFICER, Role.SUPPORT),
)
@domain_errors
def transition(request: HttpRequest, client_id: UUID, payload: TransitionIn) -> Any:
    """Move the KYC case (decisions need a compliance officer)."""
    services.transition_kyc(
        client_id, payload.to_state, by=request.user, reason=payload.reason, final=payload.final
    )
    return _kyc(client_id, with_history=True)


@router.get("/clients/{client_id}/may", response=DecisionOut, auth=staff_only(*READERS))
@domain_errors
def may(
    request: HttpRequest,
    client_id: UUID,
    action: str,
    amount: int | None = None,
    currency: str | None = None,
    deposited_total: int | None = None,
) -> Any:
    """What the policy says about ``action`` for this client, with the reason."""
    return queries.may(
        client_id, action, amount=amount, currency=currency, deposited_total=deposited_total
    ).__dict__


@router.get("/clients/{client_id}/flags", response=list[FlagOut], auth=staff_only(*READERS))
@domain_errors
def flags(request: HttpRequest, client_id: UUID) -> Any:
    """The client's open flags."""
    return [f.__dict__ for f in queries.open_flags(client_id)]


@router.post(
    "/clients/{client_id}/flags",
    response={201: FlagOut},
    auth=staff_only(Role.COMPLIANCE_OFFICER, Role.FINANCE),
)
@domain_errors
def raise_flag(request: HttpRequest, client_id: UUID, payload: FlagIn) -> Any:
    """Open a flag."""
    flag = services.raise_flag(client_id, payload.kind, by=request.user, reason=payload.reason)
    return Status(201, flag.__dict__)


@router.post(
    "/clients/{client_id}/flags/{kind}/clear",
    response=FlagOut,
    auth=staff_only(Role.COMPLIANCE_OFFICER, Role.FINANCE),
)
@domain_errors
def clear_flag(request: HttpRequest, client_id: UUID, kind: str, payload: FlagIn) -> Any:
    """Close a flag (not by the person who raised it)."""
    return services.clear_flag(client_id, kind, by=request.user, reason=payload.reason).__dict__


@router.get("/queues/{state}", response=list[KycOut], auth=staff_only(Role.COMPLIANCE_OFFICER))
def queue(
    request: HttpRequest, state: str, limit: Annotated[int, Field(ge=1, le=500)] = 100
) -> Any:
    """Review queue: clients in ``state``, longest waiting first."""
    return [
        {**v.__dict__, "history": []}
        for v in queries.clients_in_state(state, limit=min(limit, 500))
    ]


# -- documents ------------------------------------------------------------------------------


class DocumentOut(Schema):
    id: UUID
    client_id: UUID
    doc_type: str
    status: str
    content_type: str
    size: int
    sha256: str
    issued_on: date | None
    expires_on: date | None
    uploaded_at: datetime
    uploaded_by: str
    deleted_at: datetime | None


class ReviewIn(Schema):
    accepted: bool
    note: str = ""


class ReasonIn(Schema):
    reason: str


class UrlOut(Schema):
    url: str
    expires_in: int


@router.post("/clients/{client_id}/documents", response={201: DocumentOut}, auth=session)
@domain_errors
def upload(
    request: HttpRequest,
    client_id: UUID,
    doc_type: Form[str],
    file: File[UploadedFile],
    issued_on: Form[date | None] = None,
    expires_on: Form[date | None] = None,
) -> Any:
    """Upload a KYC document (the client themself, support or compliance)."""
    visible_client(request, client_id)
    content = file.read(doc_storage.max_bytes() + 1)
    view = services.upload_document(
        client_id,
        doc_type=doc_type,
        content=content,
        by=request.user,
        filename=file.name or "",
        declared_content_type=file.content_type,
        issued_on=issued_on,
        expires_on=expires_on,
    )
    return Status(201, view.__dict__)


@router.get("/clients/{client_id}/documents", response=list[DocumentOut], auth=session)
@domain_errors
def list_documents(request: HttpRequest, client_id: UUID) -> Any:
    """The client's documents (metadata only)."""
    visible_client(request, client_id)
    return [d.__dict__ for d in queries.documents_of(client_id)]


@router.post("/documents/{document_id}/url", response=UrlOut, auth=session)
@domain_errors
def issue_url(request: HttpRequest, document_id: UUID) -> Any:
    """A short-lived signed URL to read the document (logged)."""
    url = services.document_url(document_id, by=request.user)
    return {"url": url, "expires_in": services.url_max_age()}


@router.get("/documents/download/{token}", url_name="compliance_document_download", auth=None)
@domain_errors
def download(request: HttpRequest, token: str) -> Any:
    """Serve a document through its signed URL (the token is the credential)."""
    opened = services.open_document(token)
    response = FileResponse(
        opened.file,
        content_type=opened.document.content_type,
        as_attachment=True,
        filename=opened.filename,
    )
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@router.post(
    "/documents/{document_id}/review",
    response=DocumentOut,
    auth=staff_only(Role.COMPLIANCE_OFFICER),
)
@domain_errors
def review(request: HttpRequest, document_id: UUID, payload: ReviewIn) -> Any:
    """Accept or reject a document."""
    return services.review_document(
        document_id, accepted=payload.accepted, by=request.user, note=payload.note
    ).__dict__


@router.post(
    "/documents/{document_id}/delete",
    response=DocumentOut,
    auth=staff_only(Role.COMPLIANCE_OFFICER),
)
@domain_errors
def delete(request: HttpRequest, document_id: UUID, payload: ReasonIn) -> Any:
    """Delete the stored bytes (metadata and audit trail remain)."""
    return services.delete_document(document_id, by=request.user, reason=payload.reason).__dict__


# -- screening, cases and alerts ------------------------------------------------------------


class HitOut(Schema):
    id: UUID
    client_id: UUID
    matched_name: str
    score: int
    explanation: list[str]
    status: str
    list_source: str
    entry_external_id: str
    case_id: UUID | None
    found_at: datetime


class ResolveIn(Schema):
    confirmed: bool
    note: str


class AlertOut(Schema):
    id: UUID
    client_id: UUID
    rule: str
    severity: str
    details: dict[str, Any]
    case_id: UUID | None
    raised_at: datetime


class CaseOut(Schema):
    id: UUID
    client_id: UUID
    kind: str
    status: str
    summary: str
    assignee: str
    outcome: str
    opened_at: datetime
    closed_at: datetime | None
    notes: list[tuple[str, str, datetime]]


class NoteIn(Schema):
    text: str


class CloseIn(Schema):
    outcome: str
    reason: str


OFFICERS = staff_only(Role.COMPLIANCE_OFFICER)


@router.get("/screening/queue", response=list[HitOut], auth=OFFICERS)
def screening_queue(request: HttpRequest, limit: Annotated[int, Field(ge=1, le=500)] = 100) -> Any:
    """Possible list matches waiting for review, highest score first."""
    return [h.__dict__ for h in queries.screening_queue(limit=min(limit, 500))]


@router.post("/clients/{client_id}/screen", response=list[HitOut], auth=OFFICERS)
@domain_errors
def screen(request: HttpRequest, client_id: UUID) -> Any:
    """Screen the client now; returns new possible matches."""
    return [h.__dict__ for h in services.screen_client(client_id, by=request.user)]


@router.post("/screening/hits/{hit_id}/resolve", response=HitOut, auth=OFFICERS)
@domain_errors
def resolve_hit(request: HttpRequest, hit_id: UUID, payload: ResolveIn) -> Any:
    """Confirm or dismiss a possible match."""
    return services.resolve_hit(
        hit_id, confirmed=payload.confirmed, by=request.user, note=payload.note
    ).__dict__


@router.get("/clients/{client_id}/alerts", response=list[AlertOut], auth=staff_only(*READERS))
def client_alerts(request: HttpRequest, client_id: UUID) -> Any:
    """The client's AML alerts."""
    return [a.__dict__ for a in queries.alerts_of(client_id)]


@router.get(
    "/cases", response=list[CaseOut], auth=staff_only(Role.COMPLIANCE_OFFICER, Role.AUDITOR)
)
def case_queue(
    request: HttpRequest, status: str = "open", limit: Annotated[int, Field(ge=1, le=500)] = 100
) -> Any:
    """Investigator cases by status, oldest first."""
    return [c.__dict__ for c in queries.cases(status=status, limit=min(limit, 500))]


@router.post("/cases/{case_id}/notes", response={204: None}, auth=OFFICERS)
@domain_errors
def add_note(request: HttpRequest, case_id: UUID, payload: NoteIn) -> Any:
    """Add a note to a case."""
    services.add_case_note(case_id, by=request.user, text=payload.text)
    return Status(204, None)


@router.post("/cases/{case_id}/close", response={204: None}, auth=OFFICERS)
@domain_errors
def close(request: HttpRequest, case_id: UUID, payload: CloseIn) -> Any:
    """Close a case with its outcome."""
    services.close_case(case_id, by=request.user, outcome=payload.outcome, reason=payload.reason)
    return Status(204, None)


# -- provider webhooks (signed by the provider; no session) ---------------------------------


class WebhookOut(Schema):
    outcome: str


@router.post("/webhooks/sumsub", response=WebhookOut, auth=None)
@domain_errors
def sumsub_webhook(request: HttpRequest) -> Any:
    """Sumsub applicant events (X-Payload-Digest over the raw body)."""
    return {"outcome": services.receive_sumsub_webhook(request.body, request.headers)}


@router.post("/webhooks/onfido", response=WebhookOut, auth=None)
@domain_errors
def onfido_webhook(request: HttpRequest) -> Any:
    """Onfido events (X-SHA2-Signature over the raw body)."""
    return {"outcome": services.receive_onfido_webhook(request.body, request.headers)}
