"""Attribution: referral links and promo codes, first touch locked at registration, and
reassignment by permitted staff (maker-checker once the client is funded).

A click on a referral link gets a signed token (``referral_token``) that carries the code and
the time of the click; the registration form hands it back days later and
``attribute_at_registration`` resolves it (``django.core.signing`` with ``max_age``). The first
touch wins: a valid token beats a promo code typed at registration. Once written, an
attribution changes only through ``request_reassignment`` (role ``partner_manager``, a reason,
audited); after the client is funded the change waits for ``approve_reassignment`` by a
different person.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction

from brokerdesk.core import audit, clock
from brokerdesk.core.errors import (
    Conflict,
    IllegalTransition,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from brokerdesk.core.money import get_currency
from brokerdesk.partners.hierarchy import get_ib
from brokerdesk.partners.models import (
    IB,
    Attribution,
    AttributionSource,
    ClientFunding,
    IBStatus,
    LinkKind,
    Reassignment,
    ReassignmentState,
    ReferralLink,
)
from brokerdesk.partners.permissions import staff_actor
from brokerdesk.staff.roles import Role, actor_label, ensure_different_approver

TOKEN_SALT = "brokerdesk.partners.referral"  # noqa: S105 - a signing salt, not a secret
DEFAULT_TOKEN_MAX_AGE = timedelta(days=90)


def token_max_age() -> timedelta:
    """How long a referral click counts (``PARTNERS_REFERRAL_MAX_AGE_DAYS``, default 90)."""
    days = getattr(settings, "PARTNERS_REFERRAL_MAX_AGE_DAYS", None)
    return timedelta(days=int(days)) if days is not None else DEFAULT_TOKEN_MAX_AGE


def _require_manager(by: Any) -> str:
    return staff_actor(by, Role.PARTNER_MANAGER)


def _reason(reason: str) -> str:
    if not (reason or "").strip():
        raise ValidationError("A reason is required.", code="reason_required", field="reason")
    return reason.strip()


def _uuid(value: UUID | str, field: str) -> UUID:
    try:
        return value if isinstance(value, UUID) else UUID(str(value))
    except ValueError:
        raise ValidationError(f"{field} is not a UUID.", code="bad_uuid", field=field) from None


# ---------------------------------------------------------------------------- links


def create_link(
    ib_id: UUID | str,
    *,
    by: Any,
    kind: str = LinkKind.LINK,
    code: str | None = None,
    campaign: str = "",
) -> ReferralLink:
    """A new referral link or promo code for the IB (a random code unless one is given)."""
    actor = actor_label(by)
    if kind not in LinkKind.values:
        raise ValidationError(f"Unknown link kind {kind!r}.", code="invalid", field="kind")
    code = (code or secrets.token_urlsafe(9)).strip()
    if kind == LinkKind.PROMO:
        code = code.upper()
    if not code or len(code) > 60 or not code.replace("-", "").replace("_", "").isalnum():
        raise ValidationError(
            "A code is 1-60 letters, digits, '-' or '_'.", code="invalid", field="code"
        )
    with transaction.atomic():
        ib = get_ib(ib_id)
        try:
            with transaction.atomic():
                link = ReferralLink.objects.create(
                    ib=ib, kind=kind, code=code, campaign=campaign, created_at=clock.now()
                )
        except IntegrityError:
            raise Conflict(
                f"The code {code!r} is taken.", code="code_taken", field="code"
            ) from None
        audit.record(
            actor=actor,
            action="partners.link_created",
            object_type="referral_link",
            object_id=str(link.pk),
            after={"ib": str(ib.pk), "kind": kind, "code": code, "campaign": campaign},
        )
    return link


def _active_link(code: str, kind: str | None = None) -> ReferralLink:
    qs = ReferralLink.objects.select_related("ib").filter(code=code, active=True)
    if kind is not None:
        qs = qs.filter(kind=kind)
    link = qs.first()
    if link is None or link.ib.status != IBStatus.ACTIVE:
        raise NotFound("Unknown or inactive referral code.", code="unknown_code", field="code")
    return link


def referral_token(code: str, *, clicked_at: datetime | None = None) -> str:
    """The signed token for a click on a referral link (kept in a cookie until registration)."""
    link = _active_link(code, LinkKind.LINK)
    when = clicked_at or clock.now()
    return signing.dumps({"c": link.code, "t": when.isoformat()}, salt=TOKEN_SALT, compress=True)


@dataclass(frozen=True)
class Touch:
    """A verified referral touch: which link, and when."""

    link: ReferralLink
    touched_at: datetime


def resolve_token(token: str, *, max_age: timedelta | None = None) -> Touch:
    """Verify a referral token; ``ValidationError`` when forged, expired or unknown."""
    age = max_age or token_max_age()
    try:
        data = signing.loads(token, salt=TOKEN_SALT, max_age=age)
    except signing.SignatureExpired:
        raise ValidationError(
            "The referral link has expired.", code="referral_expired", field="token"
        ) from None
    except signing.BadSignature:
        raise ValidationError(
            "The referral token is not valid.", code="referral_invalid", field="token"
        ) from None
    try:
        touched_at = datetime.fromisoformat(str(data["t"]))
        link = _active_link(str(data["c"]), LinkKind.LINK)
    except (KeyError, TypeError, ValueError, NotFound):
        raise ValidationError(
            "The referral token is not valid.", code="referral_invalid", field="token"
        ) from None
    if clock.now() - touched_at > age:  # the click time in the token, on our clock
        raise ValidationError(
            "The referral link has expired.", code="referral_expired", field="token"
        )
    return Touch(link, touched_at)


# ---------------------------------------------------------------------------- attribution


@dataclass(frozen=True)
class AttributionResult:
    """What registration-time attribution decided; ``ignored`` says why a touch was dropped."""

    attribution: Attribution | None
    ignored: tuple[str, ...] = ()


def _client_facts(client_id: UUID) -> tuple[str, str]:
    """A privacy-limited label ("Maria I.") and the country, from the clients module."""
    from brokerdesk.clients.queries import get_client

    try:
        client = get_client(client_id)
    except NotFound:
        return "", ""
    if client.kind == "corporate" and client.company_name:
        label = client.company_name
    else:
        name = client.display_name.split()
        label = f"{name[0]} {name[-1][:1]}." if len(name) > 1 else (name[0] if name else "")
    return label[:120], client.country[:2]


def attribute_at_registration(
    client_id: UUID | str,
    *,
    token: str | None = None,
    promo_code: str | None = None,
    by: Any = "system:registration",
) -> AttributionResult:
    """Attribute a newly registered client by first touch; lock it. Idempotent.

    A valid link token wins over a promo code; an expired or forged token is ignored (and
    named in ``ignored``) and the promo code, if any, applies. An existing attribution is kept.
    """
    cid = _uuid(client_id, "client_id")
    actor = actor_label(by)
    ignored: list[str] = []
    touch: Touch | None = None
    source = AttributionSource.LINK
    if token:
        try:
            touch = resolve_token(token)
        except ValidationError as exc:
            ignored.append(exc.code)
    if touch is None and promo_code:
        try:
            touch = Touch(_active_link(promo_code.strip().upper(), LinkKind.PROMO), clock.now())
            source = AttributionSource.PROMO
        except NotFound:
            ignored.append("unknown_promo_code")
    with transaction.atomic():
        existing = Attribution.objects.filter(client_id=cid).first()
        if existing is not None:
            return AttributionResult(existing, (*ignored, "already_attributed"))
        if touch is None:
            return AttributionResult(None, tuple(ignored))
        now = clock.now()
        label, country = _client_facts(cid)
        try:
            with transaction.atomic():
                attribution = Attribution.objects.create(
                    client_id=cid,
                    ib=touch.link.ib,
                    source=source,
                    link=touch.link,
                    touched_at=touch.touched_at,
                    attributed_at=now,
                    client_label=label,
                    country=country,
                    updated_at=now,
                )
        except IntegrityError:  # a concurrent registration call won
            return AttributionResult(
                Attribution.objects.get(client_id=cid), (*ignored, "already_attributed")
            )
        audit.record(
            actor=actor,
            action="partners.client_attributed",
            object_type="client",
            object_id=str(cid),
            after={
                "ib": str(touch.link.ib_id),
                "source": source,
                "code": touch.link.code,
                "touched_at": touch.touched_at.isoformat(),
            },
        )
    return AttributionResult(attribution, tuple(ignored))


def record_funding(
    client_id: UUID | str, *, amount: int, currency: str, reference: str, at: datetime
) -> bool:
    """Record a client's first deposit (later deposits change nothing); True when new."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ValidationError(
            "The amount is a positive integer of minor units.", code="invalid", field="amount"
        )
    cid = _uuid(client_id, "client_id")
    code = get_currency(currency).code
    with transaction.atomic():
        if ClientFunding.objects.filter(client_id=cid).exists():
            return False
        ClientFunding.objects.bulk_create(
            [
                ClientFunding(
                    client_id=cid,
                    first_amount=amount,
                    currency=code,
                    reference=reference,
                    funded_at=at,
                )
            ],
            ignore_conflicts=True,
        )
        return ClientFunding.objects.filter(client_id=cid, reference=reference).exists()


def is_funded(client_id: UUID | str) -> bool:
    """True once the client has deposited."""
    return ClientFunding.objects.filter(client_id=client_id).exists()


def _apply(request: Reassignment, *, actor: str, now: datetime) -> Attribution:
    label, country = _client_facts(request.client_id)
    attribution = (
        Attribution.objects.select_for_update().filter(client_id=request.client_id).first()
    )
    before: dict[str, str | None] = {"ib": str(attribution.ib_id) if attribution else None}
    if attribution is None:
        attribution = Attribution.objects.create(
            client_id=request.client_id,
            ib=request.to_ib,
            source=AttributionSource.MANUAL,
            touched_at=now,
            attributed_at=now,
            client_label=label,
            country=country,
            updated_at=now,
        )
    else:
        attribution.ib = request.to_ib
        attribution.source = AttributionSource.MANUAL
        attribution.link = None
        attribution.attributed_at = attribution.updated_at = now
        attribution.save(update_fields=["ib", "source", "link", "attributed_at", "updated_at"])
    audit.record(
        actor=actor,
        action="partners.client_reassigned",
        object_type="client",
        object_id=str(request.client_id),
        reason=request.reason,
        before=before,
        after={
            "ib": str(request.to_ib_id),
            "request": str(request.pk),
            "requested_by": request.requested_by,
            "approved_by": request.decided_by or None,
        },
    )
    return attribution


def request_reassignment(
    client_id: UUID | str, to_ib_id: UUID | str, *, by: Any, reason: str
) -> Reassignment:
    """Assign or reassign a client (partner managers only, with a reason, audited).

    Applied at once while the client is not funded; after funding it waits (``pending``) for
    ``approve_reassignment`` by another person.
    """
    actor = _require_manager(by)
    reason = _reason(reason)
    cid = _uuid(client_id, "client_id")
    with transaction.atomic():
        to_ib = get_ib(to_ib_id)
        if to_ib.status != IBStatus.ACTIVE:
            raise ValidationError("The IB is suspended.", code="ib_suspended", field="to_ib_id")
        current = Attribution.objects.select_for_update().filter(client_id=cid).first()
        if current is not None and current.ib_id == to_ib.pk:
            raise Conflict(
                "The client is already attributed to this IB.", code="no_change", field="to_ib_id"
            )
        if Reassignment.objects.filter(client_id=cid, state=ReassignmentState.PENDING).exists():
            raise Conflict(
                "A reassignment of this client is already waiting for approval.",
                code="reassignment_pending",
                field="client_id",
            )
        funded = is_funded(cid)
        now = clock.now()
        request = Reassignment.objects.create(
            client_id=cid,
            from_ib=current.ib if current else None,
            to_ib=to_ib,
            reason=reason,
            state=ReassignmentState.PENDING if funded else ReassignmentState.APPLIED,
            funded=funded,
            requested_by=actor,
            requested_at=now,
        )
        audit.record(
            actor=actor,
            action="partners.reassignment_requested",
            object_type="client",
            object_id=str(cid),
            reason=reason,
            after={"request": str(request.pk), "to_ib": str(to_ib.pk), "funded": funded},
        )
        if not funded:
            _apply(request, actor=actor, now=now)
    return request


def _pending(request_id: UUID | str) -> Reassignment:
    request = (
        Reassignment.objects.select_for_update()
        .select_related("to_ib")
        .filter(pk=_uuid(request_id, "request_id"))
        .first()
    )
    if request is None:
        raise NotFound("No such reassignment.", code="not_found", field="request_id")
    if request.state != ReassignmentState.PENDING:
        raise IllegalTransition(
            f"The reassignment is {request.state}, not pending.", field="request_id"
        )
    return request


def approve_reassignment(request_id: UUID | str, *, by: Any, reason: str = "") -> Attribution:
    """The second approver applies a pending reassignment (never the requester)."""
    actor = _require_manager(by)
    if actor.startswith("system:"):
        raise PermissionDenied(
            "The second approver must be a person.", code="approver_required", field="by"
        )
    with transaction.atomic():
        request = _pending(request_id)
        ensure_different_approver(request.requested_by, actor)
        now = clock.now()
        request.state = ReassignmentState.APPLIED
        request.decided_by = actor
        request.decided_at = now
        request.decision_reason = reason
        request.save(update_fields=["state", "decided_by", "decided_at", "decision_reason"])
        return _apply(request, actor=actor, now=now)


def reject_reassignment(request_id: UUID | str, *, by: Any, reason: str) -> Reassignment:
    """Refuse a pending reassignment; the attribution stays as it is."""
    actor = _require_manager(by)
    reason = _reason(reason)
    with transaction.atomic():
        request = _pending(request_id)
        request.state = ReassignmentState.REJECTED
        request.decided_by = actor
        request.decided_at = clock.now()
        request.decision_reason = reason
        request.save(update_fields=["state", "decided_by", "decided_at", "decision_reason"])
        audit.record(
            actor=actor,
            action="partners.reassignment_rejected",
            object_type="client",
            object_id=str(request.client_id),
            reason=reason,
            after={"request": str(request.pk)},
        )
    return request


def attribution_of(client_id: UUID | str) -> Attribution | None:
    """The client's attribution, if any."""
    return Attribution.objects.filter(client_id=client_id).first()


def attributed_ib(client_id: UUID | str) -> IB | None:
    """The IB the client belongs to, if any."""
    attribution = Attribution.objects.select_related("ib").filter(client_id=client_id).first()
    return attribution.ib if attribution else None
