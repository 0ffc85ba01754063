"""Read side of compliance, and the permission policy ``may``.

``may(client_id, action, …)`` is the one place that decides what a client may do (DESIGN §1.5):
deposit, trade, withdraw, earn_commission, receive_bonus — from the KYC state, the
jurisdiction's rule set and the client's open flags. Callers (payments, trading, partners,
bonuses) ask it and show ``Decision.reason`` to support when it says no.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from brokerdesk.compliance import rules
from brokerdesk.compliance.kyc import KycState
from brokerdesk.compliance.models import ClientFlag, Document, KycCase, KycTransition, RuleSet
from brokerdesk.compliance.rules import ACTIONS, RuleSetView
from brokerdesk.core import clock
from brokerdesk.core.errors import NotFound, ValidationError
from brokerdesk.core.money import get_currency

# -- rule sets ------------------------------------------------------------------------------


def rule_set_for(jurisdiction: str, *, on: date | None = None) -> RuleSetView:
    """The version of ``jurisdiction``'s rule set in force ``on`` (today by default)."""
    day = on or clock.now().date()
    found = (
        RuleSet.objects.filter(jurisdiction=jurisdiction, effective_from__lte=day)
        .order_by("-version")
        .values_list("pk", "checksum")
        .first()
    )
    if found is None:
        raise NotFound(
            f"No rule set for jurisdiction {jurisdiction!r}.",
            code="unknown_jurisdiction",
            field="jurisdiction",
        )
    pk, digest = found
    parsed = _parsed_rule_sets.get(digest)
    if parsed is None:  # stored versions never change, so a parse is kept by checksum
        parsed = rules.parse(RuleSet.objects.get(pk=pk).data)
        if len(_parsed_rule_sets) > 256:
            _parsed_rule_sets.clear()
        _parsed_rule_sets[digest] = parsed
    return parsed


_parsed_rule_sets: dict[str, RuleSetView] = {}


def jurisdictions() -> list[str]:
    """Every jurisdiction with at least one rule set."""
    return sorted(set(RuleSet.objects.values_list("jurisdiction", flat=True)))


@dataclass(frozen=True)
class OnboardingRules:
    """What registration needs to know from a jurisdiction."""

    jurisdiction: str
    rule_set_version: int
    min_age: int


def onboarding_rules(*, jurisdiction: str, country: str, client_kind: str) -> OnboardingRules:
    """Check that this jurisdiction onboards this kind of client from this country."""
    try:
        rs = rule_set_for(jurisdiction)
    except NotFound:
        raise ValidationError(
            f"Unknown jurisdiction {jurisdiction!r}.",
            code="unknown_jurisdiction",
            field="jurisdiction",
        ) from None
    if client_kind not in rs.client_kinds:
        raise ValidationError(
            f"{rs.name} does not onboard {client_kind} clients.",
            code="client_kind_not_accepted",
            field="kind",
        )
    if not rs.country_allowed(country):
        raise ValidationError(
            f"{rs.name} does not accept clients from {country}.",
            code="country_not_accepted",
            field="country",
        )
    return OnboardingRules(rs.jurisdiction, rs.version, rs.min_age)


# -- KYC state and flags --------------------------------------------------------------------


@dataclass(frozen=True)
class KycTransitionView:
    """One step of a client's KYC history."""

    from_state: str
    to_state: str
    actor: str
    reason: str
    occurred_at: datetime


@dataclass(frozen=True)
class KycView:
    """A client's KYC state."""

    client_id: UUID
    state: str
    rejection_final: bool
    updated_at: datetime | None
    approved_at: datetime | None


def kyc_status(client_id: UUID | str) -> KycView:
    """The client's KYC state (``lead`` when nothing has happened yet)."""
    case = KycCase.objects.filter(client_id=client_id).first()
    if case is None:
        return KycView(UUID(str(client_id)), KycState.LEAD.value, False, None, None)
    return KycView(
        case.client_id, case.state, case.rejection_final, case.updated_at, case.approved_at
    )


def kyc_history(client_id: UUID | str) -> list[KycTransitionView]:
    """Every KYC transition of the client, oldest first."""
    return [
        KycTransitionView(t.from_state, t.to_state, t.actor, t.reason, t.occurred_at)
        for t in KycTransition.objects.filter(case__client_id=client_id).order_by(
            "occurred_at", "id"
        )
    ]


def clients_in_state(state: str, *, limit: int = 100) -> list[KycView]:
    """A review queue: clients in ``state``, longest waiting first."""
    return [
        KycView(c.client_id, c.state, c.rejection_final, c.updated_at, c.approved_at)
        for c in KycCase.objects.filter(state=state).order_by("updated_at")[:limit]
    ]


@dataclass(frozen=True)
class FlagView:
    """A compliance flag on a client."""

    id: UUID
    client_id: UUID
    kind: str
    reason: str
    source: str
    opened_at: datetime
    opened_by: str
    closed_at: datetime | None
    closed_by: str


def flag_view(flag: ClientFlag) -> FlagView:
    """The read shape of a flag row."""
    return FlagView(
        flag.id,
        flag.client_id,
        flag.kind,
        flag.reason,
        flag.source,
        flag.opened_at,
        flag.opened_by,
        flag.closed_at,
        flag.closed_by,
    )


def open_flags(client_id: UUID | str) -> list[FlagView]:
    """The client's open flags, oldest first."""
    return [
        flag_view(f)
        for f in ClientFlag.objects.filter(client_id=client_id, closed_at__isnull=True).order_by(
            "opened_at", "id"
        )
    ]


def has_open_flag(client_id: UUID | str, kind: str) -> bool:
    """True when the client has an open flag of ``kind``."""
    return ClientFlag.objects.filter(
        client_id=client_id, kind=kind, closed_at__isnull=True
    ).exists()


# -- documents ------------------------------------------------------------------------------

USABLE_DOCUMENT_STATUSES = (Document.Status.RECEIVED, Document.Status.ACCEPTED)


def missing_documents(client_id: UUID | str) -> list[tuple[str, ...]]:
    """Required document groups (any one type satisfies a group) the client has not provided."""
    from brokerdesk.clients.queries import get_client

    client = get_client(client_id)
    rs = rule_set_for(client.jurisdiction)
    today = clock.now().date()
    held = {
        doc_type
        for doc_type, expires_on in Document.objects.filter(
            client_id=client.id, status__in=USABLE_DOCUMENT_STATUSES
        ).values_list("doc_type", "expires_on")
        if expires_on is None or expires_on >= today
    }
    return [g for g in rs.required_documents.get(client.kind, ()) if not held.intersection(g)]


# -- enhanced due diligence -----------------------------------------------------------------


def edd_reasons(
    client_id: UUID | str, *, deposited_totals: dict[str, int] | None = None
) -> list[str]:
    """Why this client needs enhanced due diligence under its rule set (empty: it does not)."""
    from brokerdesk.clients.queries import get_client

    client = get_client(client_id)
    triggers = rule_set_for(client.jurisdiction).edd_triggers
    reasons = []
    if triggers.get("pep") and has_open_flag(client.id, "pep"):
        reasons.append("politically exposed person")
    if triggers.get("corporate") and client.kind == "corporate":
        reasons.append("corporate client")
    high_risk = set(triggers.get("high_risk_countries", []))
    for label, country in (("residence", client.country), ("nationality", client.nationality)):
        if country and country in high_risk:
            reasons.append(f"high-risk country of {label}: {country}")
    for currency, threshold in triggers.get("cumulative_deposits_over", {}).items():
        total = (deposited_totals or {}).get(currency, 0)
        if total > threshold:
            reasons.append(f"cumulative deposits above {threshold} minor units of {currency}")
    return reasons


# -- the policy ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """The answer of ``may``: allowed or not, a stable reason code and a sentence for support."""

    allowed: bool
    action: str
    reason_code: str
    reason: str
    kyc_state: str = ""
    jurisdiction: str = ""
    rule_set_version: int | None = None
    limit_remaining: int | None = None  # minor units left before verification (deposits)
    currency: str | None = None

    def __bool__(self) -> bool:
        return self.allowed


DepositedTotal = int | Callable[[UUID, str], int]

_STATE_REFUSALS: dict[str, tuple[str, str]] = {
    KycState.LEAD: ("kyc_not_started", "The client has not started verification."),
    KycState.DOCUMENTS_PENDING: (
        "kyc_documents_pending",
        "The client's verification documents are still missing.",
    ),
    KycState.UNDER_VERIFICATION: (
        "kyc_under_verification",
        "The client's identity is still being verified.",
    ),
    KycState.MANUAL_REVIEW: (
        "kyc_manual_review",
        "The client's file is waiting for a compliance officer's review.",
    ),
    KycState.REJECTED: ("kyc_rejected", "The client's verification was rejected."),
    KycState.RESTRICTED: ("kyc_restricted", "The client's account is restricted by compliance."),
    KycState.AML_REVIEW: (
        "kyc_aml_review",
        "The client's account is restricted pending an AML review.",
    ),
}

_FLAG_TEXT = {
    "sanctions_hit": "a possible sanctions match is open",
    "fraud_suspected": "suspected fraud is under investigation",
    "aml_hold": "an AML hold is in place",
    "dispute": "a payment dispute is open",
    "chargeback": "a chargeback is open",
    "documents_expired": "the client's documents have expired",
}


def may(
    client_id: UUID | str,
    action: str,
    *,
    amount: int | None = None,
    currency: str | None = None,
    deposited_total: DepositedTotal | None = None,
) -> Decision:
    """Decide whether the client may do ``action`` now.

    ``action`` is one of deposit, trade, withdraw, earn_commission, receive_bonus. For a
    deposit by a client who is not yet verified, pass ``amount`` and ``currency`` (minor units)
    and ``deposited_total``: what the client has already deposited in that currency, as an int
    or as a callable ``(client_id, currency) -> int`` (only called when the limit applies).
    """
    from brokerdesk.clients.queries import get_client

    if action not in ACTIONS:
        raise ValidationError(
            f"Unknown action {action!r}; one of {', '.join(ACTIONS)}.",
            code="unknown_action",
            field="action",
        )
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)):
        raise ValidationError(
            "Amounts are whole numbers of minor units.", code="not_integer", field="amount"
        )
    if amount is not None and amount <= 0:
        raise ValidationError("The amount must be positive.", code="not_positive", field="amount")
    if currency is not None:
        currency = get_currency(currency).code
    client = get_client(client_id)
    state = kyc_status(client.id).state

    def decide(allowed: bool, code: str, reason: str, **extra: Any) -> Decision:
        return Decision(
            allowed,
            action,
            code,
            reason,
            kyc_state=state,
            jurisdiction=client.jurisdiction,
            rule_set_version=extra.pop("version", None),
            **extra,
        )

    try:
        rs = rule_set_for(client.jurisdiction)
    except NotFound:
        return decide(False, "no_rule_set", f"No rule set for {client.jurisdiction}.")

    def refuse(code: str, reason: str, **extra: Any) -> Decision:
        return decide(False, code, reason, version=rs.version, **extra)

    def allow(code: str, reason: str, **extra: Any) -> Decision:
        return decide(True, code, reason, version=rs.version, **extra)

    if client.relationship_ended_at is not None and action != "withdraw":
        return refuse("relationship_ended", "The client's relationship with us has ended.")
    if not rs.country_allowed(client.country) and action != "withdraw":
        return refuse(
            "country_blocked",
            f"Clients from {client.country} are not accepted under {rs.name}; "
            "they may only withdraw.",
        )
    for flag in open_flags(client.id):
        if action in rs.blocks(flag.kind):
            text = _FLAG_TEXT.get(flag.kind, f"a {flag.kind} flag is open")
            return refuse(f"flag_{flag.kind}", f"Not allowed while {text}.")

    if state == KycState.APPROVED:
        if action == "receive_bonus" and not rs.bonuses_allowed:
            return refuse("bonuses_not_allowed", f"Bonuses are not offered under {rs.name}.")
        if action == "earn_commission" and not rs.commission_allowed:
            return refuse(
                "commission_not_allowed", f"Partner commission is not paid under {rs.name}."
            )
        return allow("verified", "The client is verified.")

    if state == KycState.RESTRICTED and action == "withdraw":
        return allow(
            "restricted_withdrawal",
            "Restricted clients may withdraw to return funds (to the original payment route).",
        )

    if state in rs.pre_verification_states:
        if action == "trade" and rs.pre_verification_trade:
            return allow("pre_verification_trade", f"{rs.name} allows trading before verification.")
        if action == "deposit":
            return _pre_verification_deposit(
                client.id, rs, amount, currency, deposited_total, allow, refuse
            )
    code, text = _STATE_REFUSALS[KycState(state)]
    return refuse(code, f"{text} Action '{action}' needs a verified client.")


def _pre_verification_deposit(
    client_id: UUID,
    rs: RuleSetView,
    amount: int | None,
    currency: str | None,
    deposited_total: DepositedTotal | None,
    allow: Callable[..., Decision],
    refuse: Callable[..., Decision],
) -> Decision:
    if amount is None or currency is None:
        raise ValidationError(
            "Before verification a deposit is checked against a limit: pass amount and currency.",
            code="amount_required",
            field="amount" if amount is None else "currency",
        )
    limit = rs.pre_verification_limits.get(currency)
    if limit is None or limit == 0:
        return refuse(
            "no_pre_verification_limit",
            f"Unverified clients cannot deposit {currency} under {rs.name}.",
            currency=currency,
            limit_remaining=0,
        )
    if deposited_total is None:
        raise ValidationError(
            "Before verification the deposits so far are needed: pass deposited_total.",
            code="deposited_total_required",
            field="deposited_total",
        )
    so_far = deposited_total(client_id, currency) if callable(deposited_total) else deposited_total
    if isinstance(so_far, bool) or not isinstance(so_far, int) or so_far < 0:
        raise ValidationError(
            "deposited_total is a whole number of minor units ≥ 0.",
            code="not_integer",
            field="deposited_total",
        )
    remaining = max(limit - so_far, 0)
    if amount > remaining:
        return refuse(
            "pre_verification_limit",
            f"Unverified clients may deposit up to {limit} minor units of {currency} in total; "
            f"{remaining} remain. Complete verification to deposit more.",
            currency=currency,
            limit_remaining=remaining,
        )
    return allow(
        "pre_verification_deposit",
        f"Within the pre-verification limit ({remaining - amount} minor units remain after it).",
        currency=currency,
        limit_remaining=remaining - amount,
    )


# -- documents (read side) ------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentView:
    """A document's metadata (never its bytes: those go through a signed URL)."""

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
    review_note: str = ""  # the reviewer's note (the reason, for a rejected document)


def document_view(doc: Document) -> DocumentView:
    """The read shape of a document row."""
    return DocumentView(
        doc.id,
        doc.client_id,
        doc.doc_type,
        doc.status,
        doc.content_type,
        doc.size,
        doc.sha256,
        doc.issued_on,
        doc.expires_on,
        doc.uploaded_at,
        doc.uploaded_by,
        doc.deleted_at,
        doc.review_note,
    )


def documents_of(client_id: UUID | str) -> list[DocumentView]:
    """The client's documents, newest first (deleted ones keep their metadata)."""
    return [
        document_view(d)
        for d in Document.objects.filter(client_id=client_id).order_by("-uploaded_at", "-id")
    ]


def get_document(document_id: UUID | str) -> DocumentView:
    """One document's metadata, or ``NotFound``."""
    doc = Document.objects.filter(pk=document_id).first()
    if doc is None:
        raise NotFound("No such document.", code="document_not_found", field="document_id")
    return document_view(doc)


@dataclass(frozen=True)
class AccessView:
    """One logged access to a document."""

    action: str
    actor: str
    occurred_at: datetime
    detail: str


def document_accesses(document_id: UUID | str) -> list[AccessView]:
    """Who issued URLs for and downloaded a document, oldest first."""
    from brokerdesk.compliance.models import DocumentAccess

    return [
        AccessView(a.action, a.actor, a.occurred_at, a.detail)
        for a in DocumentAccess.objects.filter(document_id=document_id).order_by(
            "occurred_at", "id"
        )
    ]


def expiring_documents(*, within_days: int, today: date | None = None) -> list[DocumentView]:
    """Usable documents that expire within ``within_days`` (soonest first)."""
    from datetime import timedelta

    day = today or clock.now().date()
    return [
        document_view(d)
        for d in Document.objects.filter(
            status__in=USABLE_DOCUMENT_STATUSES,
            expires_on__gte=day,
            expires_on__lte=day + timedelta(days=within_days),
        ).order_by("expires_on", "id")
    ]


# -- screening, cases and alerts (read side) ------------------------------------------------


@dataclass(frozen=True)
class HitView:
    """A possible list match and its explanation."""

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


def hit_view(hit: Any) -> HitView:
    """The read shape of a screening hit."""
    return HitView(
        hit.id,
        hit.client_id,
        hit.matched_name,
        hit.score,
        list(hit.explanation),
        hit.status,
        hit.entry.sanctions_list.source,
        hit.entry.external_id,
        hit.case_id,
        hit.found_at,
    )


def screening_queue(*, limit: int = 100) -> list[HitView]:
    """Open possible matches, highest score first."""
    from brokerdesk.compliance.models import ScreeningHit

    rows = (
        ScreeningHit.objects.select_related("entry__sanctions_list")
        .filter(status="open")
        .order_by("-score", "found_at")[:limit]
    )
    return [hit_view(h) for h in rows]


def hits_of(client_id: UUID | str) -> list[HitView]:
    """Every screening hit of a client, newest first."""
    from brokerdesk.compliance.models import ScreeningHit

    rows = ScreeningHit.objects.select_related("entry__sanctions_list").filter(client_id=client_id)
    return [hit_view(h) for h in rows.order_by("-found_at", "-id")]


@dataclass(frozen=True)
class AlertView:
    """An AML alert."""

    id: UUID
    client_id: UUID
    rule: str
    severity: str
    details: dict[str, Any]
    case_id: UUID | None
    raised_at: datetime


def alert_view(alert: Any) -> AlertView:
    """The read shape of an AML alert."""
    return AlertView(
        alert.id,
        alert.client_id,
        alert.rule,
        alert.severity,
        dict(alert.details),
        alert.case_id,
        alert.raised_at,
    )


def alerts_of(client_id: UUID | str) -> list[AlertView]:
    """A client's AML alerts, newest first."""
    from brokerdesk.compliance.models import AmlAlert

    return [
        alert_view(a)
        for a in AmlAlert.objects.filter(client_id=client_id).order_by("-raised_at", "-id")
    ]


@dataclass(frozen=True)
class CaseView:
    """An investigator case with its notes."""

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


def cases(
    *, status: str | None = None, client_id: UUID | str | None = None, limit: int = 100
) -> list[CaseView]:
    """Investigator cases (the queue: open first, oldest first)."""
    from brokerdesk.compliance.models import ComplianceCase

    qs = ComplianceCase.objects.prefetch_related("notes")
    if status:
        qs = qs.filter(status=status)
    if client_id:
        qs = qs.filter(client_id=client_id)
    return [
        CaseView(
            c.id,
            c.client_id,
            c.kind,
            c.status,
            c.summary,
            c.assignee,
            c.outcome,
            c.opened_at,
            c.closed_at,
            [(n.author, n.text, n.written_at) for n in sorted(c.notes.all(), key=_note_key)],
        )
        for c in qs.order_by("opened_at", "id")[:limit]
    ]


def _note_key(note: Any) -> tuple[datetime, str]:
    return (note.written_at, str(note.id))


# -- staff queues (the back office reads these) ---------------------------------------------


def kyc_state_counts() -> dict[str, int]:
    """How many clients are in each KYC state (states with nobody are left out)."""
    from django.db.models import Count

    rows = KycCase.objects.values("state").annotate(n=Count("client_id"))
    return {row["state"]: int(row["n"]) for row in rows}


def alerts_of_case(case_id: UUID | str) -> list[AlertView]:
    """The AML alerts gathered into one case, newest first."""
    from brokerdesk.compliance.models import AmlAlert

    return [
        alert_view(a)
        for a in AmlAlert.objects.filter(case_id=UUID(str(case_id))).order_by("-raised_at", "-id")
    ]


def open_case_count() -> int:
    """How many investigator cases are not closed."""
    from brokerdesk.compliance.models import ComplianceCase

    return ComplianceCase.objects.exclude(status=ComplianceCase.Status.CLOSED).count()


# The risk score: a plain sum (capped at 100) a compliance officer can explain.
FLAG_POINTS, ALERT_POINTS, HIT_POINTS, EDD_POINTS, UNVERIFIED_POINTS = 25, 20, 30, 10, 20


def risk_score(client_id: UUID | str) -> int:
    """The client's risk score, 0 to 100: 25 per open compliance flag, 20 per AML alert, 30
    per open screening hit, 10 per enhanced-due-diligence reason of the client's rule set, and
    20 when the client's KYC is not approved (automations route on it; withdrawals are
    approved automatically only under a ceiling of it)."""
    score = FLAG_POINTS * len(open_flags(client_id))
    score += ALERT_POINTS * len(alerts_of(client_id))
    score += HIT_POINTS * sum(1 for h in hits_of(client_id) if h.status == "open")
    score += EDD_POINTS * len(edd_reasons(client_id))
    if kyc_status(client_id).state != "approved":
        score += UNVERIFIED_POINTS
    return min(score, 100)
