"""Commands of the clients module: the only functions that write its tables.

Each runs in one transaction and writes its rows, its outbox events, its audit entry and the
client's timeline together; bad input raises a ``ValidationError`` naming the field and rule.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction

from brokerdesk.clients import validation as v
from brokerdesk.clients.events import ClientRegistered, ClientUpdated, PlatformLoginLinked
from brokerdesk.clients.models import (
    Client,
    ClientKind,
    ClientTimelineEntry,
    PlatformLogin,
    Segment,
    Tag,
)
from brokerdesk.core import audit, clock
from brokerdesk.core.errors import Conflict, NotFound, ValidationError
from brokerdesk.core.events import emit
from brokerdesk.core.money import get_currency
from brokerdesk.staff.roles import actor_label

REQUIRED_TEXT = ("first_name", "last_name", "company_name", "registration_number")
CONTACT_FIELDS = (
    "email",
    "phone",
    "country",
    "address_line",
    "city",
    "postal_code",
    "preferred_language",
    "first_name",
    "last_name",
    "nationality",
    "company_name",
    "registration_number",
)


def _locked(client_id: UUID | str) -> Client:
    try:
        return Client.objects.select_for_update().get(pk=client_id)
    except (Client.DoesNotExist, ValueError, DjangoValidationError):
        raise NotFound("No such client.", code="client_not_found", field="client_id") from None


def _onboarding_min_age(jurisdiction: str, country: str, kind: str) -> int:
    # A synchronous answer from compliance: is this jurisdiction known, this country allowed?
    from brokerdesk.compliance.queries import onboarding_rules

    return onboarding_rules(jurisdiction=jurisdiction, country=country, client_kind=kind).min_age


def _ensure_email_free(email: str, exclude: UUID | None = None) -> None:
    taken = Client.objects.filter(email=email)
    if exclude is not None:
        taken = taken.exclude(pk=exclude)
    if taken.exists():
        raise Conflict(
            "A client with this e-mail address already exists.", code="email_taken", field="email"
        )


def _register(client: Client, *, by: Any) -> Client:
    _ensure_email_free(client.email)
    now = clock.now()
    client.registered_at = client.updated_at = now
    try:
        with transaction.atomic():
            client.save(force_insert=True)
    except IntegrityError:
        raise Conflict(
            "A client with this e-mail address already exists.", code="email_taken", field="email"
        ) from None
    actor = actor_label(by)
    snapshot = _snapshot(client)
    audit.record(
        actor=actor,
        action="client.register",
        object_type="client",
        object_id=str(client.pk),
        after=snapshot,
    )
    emit(
        ClientRegistered(
            client_id=client.pk,
            kind=client.kind,
            country=str(client.country),
            jurisdiction=client.jurisdiction,
            email=client.email,
        )
    )
    record_timeline(
        client.pk,
        kind="client.registered",
        summary=f"Registered as {client.get_kind_display().lower()} client under "
        f"{client.jurisdiction} ({client.country})",
        data={"by": actor},
        occurred_at=now,
    )
    return client


def _snapshot(client: Client) -> dict[str, Any]:
    data: dict[str, Any] = {f: str(getattr(client, f)) for f in CONTACT_FIELDS}
    data.update(
        kind=client.kind,
        jurisdiction=client.jurisdiction,
        date_of_birth=client.date_of_birth.isoformat() if client.date_of_birth else None,
    )
    return data


def register_individual(
    *,
    email: str,
    first_name: str,
    last_name: str,
    date_of_birth: date | None,
    country: str,
    jurisdiction: str,
    by: Any,
    phone: str = "",
    nationality: str = "",
    address_line: str = "",
    city: str = "",
    postal_code: str = "",
    preferred_language: str = "en",
    user: Any = None,
) -> Client:
    """Register a person; the jurisdiction's rules decide the minimum age and allowed countries."""
    with transaction.atomic():
        country = v.clean_country(country)
        jurisdiction = (jurisdiction or "").strip().lower()
        min_age = _onboarding_min_age(jurisdiction, country, ClientKind.INDIVIDUAL)
        client = Client(
            kind=ClientKind.INDIVIDUAL,
            user=user,
            email=v.clean_email(email),
            first_name=v.clean_text(first_name, field="first_name", max_length=100, required=True),
            last_name=v.clean_text(last_name, field="last_name", max_length=100, required=True),
            date_of_birth=v.clean_date_of_birth(
                date_of_birth, today=clock.now().date(), min_age=min_age
            ),
            country=country,
            nationality=v.clean_country(nationality, field="nationality", required=False),
            jurisdiction=jurisdiction,
            phone=v.clean_phone(phone, country=country),
            address_line=v.clean_text(address_line, field="address_line", max_length=200),
            city=v.clean_text(city, field="city", max_length=100),
            postal_code=v.clean_text(postal_code, field="postal_code", max_length=20),
            preferred_language=v.clean_text(
                preferred_language, field="preferred_language", max_length=10
            ),
        )
        return _register(client, by=by)


def register_corporate(
    *,
    email: str,
    company_name: str,
    registration_number: str,
    country: str,
    jurisdiction: str,
    by: Any,
    phone: str = "",
    address_line: str = "",
    city: str = "",
    postal_code: str = "",
    preferred_language: str = "en",
    user: Any = None,
) -> Client:
    """Register a company (``country`` is its country of incorporation)."""
    with transaction.atomic():
        country = v.clean_country(country)
        jurisdiction = (jurisdiction or "").strip().lower()
        _onboarding_min_age(jurisdiction, country, ClientKind.CORPORATE)
        client = Client(
            kind=ClientKind.CORPORATE,
            user=user,
            email=v.clean_email(email),
            company_name=v.clean_text(
                company_name, field="company_name", max_length=200, required=True
            ),
            registration_number=v.clean_text(
                registration_number, field="registration_number", max_length=50, required=True
            ),
            country=country,
            jurisdiction=jurisdiction,
            phone=v.clean_phone(phone, country=country),
            address_line=v.clean_text(address_line, field="address_line", max_length=200),
            city=v.clean_text(city, field="city", max_length=100),
            postal_code=v.clean_text(postal_code, field="postal_code", max_length=20),
            preferred_language=v.clean_text(
                preferred_language, field="preferred_language", max_length=10
            ),
        )
        return _register(client, by=by)


def update_contact(
    client_id: UUID | str, changes: Mapping[str, str], *, by: Any, reason: str
) -> Client:
    """Change contact fields (e-mail, phone, address …); audited with before and after."""
    unknown = set(changes) - set(CONTACT_FIELDS)
    if unknown:
        raise ValidationError(
            f"These fields cannot be changed here: {', '.join(sorted(unknown))}.",
            code="not_updatable",
            field=sorted(unknown)[0],
        )
    if not reason.strip():
        raise ValidationError("A reason is required.", code="reason_required", field="reason")
    with transaction.atomic():
        client = _locked(client_id)
        before = _snapshot(client)
        individual = client.kind == ClientKind.INDIVIDUAL
        for name in changes:
            if name in ("first_name", "last_name") and not individual:
                raise ValidationError(f"{name} is for individuals.", code="wrong_kind", field=name)
            if name in ("company_name", "registration_number") and individual:
                raise ValidationError(f"{name} is for companies.", code="wrong_kind", field=name)
        country = v.clean_country(changes.get("country", str(client.country)))
        if "country" in changes:
            _onboarding_min_age(client.jurisdiction, country, client.kind)
        for name, raw in changes.items():
            if name == "email":
                value: str = v.clean_email(raw)
                _ensure_email_free(value, exclude=client.pk)
            elif name == "country":
                value = country
            elif name == "nationality":
                value = v.clean_country(raw, field="nationality", required=False)
            elif name == "phone":
                value = v.clean_phone(raw, country=country)
            else:
                max_length = getattr(Client._meta.get_field(name), "max_length", None) or 200
                required = name in REQUIRED_TEXT
                value = v.clean_text(raw, field=name, max_length=max_length, required=required)
            setattr(client, name, value)
        if "phone" not in changes and "country" in changes and client.phone:
            client.phone = v.clean_phone(client.phone, country=country)
        after = _snapshot(client)
        changed = tuple(sorted(k for k in after if after[k] != before[k]))
        if not changed:
            return client
        client.updated_at = clock.now()
        client.save()
        actor = actor_label(by)
        audit.record(
            actor=actor,
            action="client.update_contact",
            object_type="client",
            object_id=str(client.pk),
            reason=reason,
            before={k: before[k] for k in changed},
            after={k: after[k] for k in changed},
        )
        emit(ClientUpdated(client_id=client.pk, fields=changed))
        record_timeline(
            client.pk,
            kind="client.updated",
            summary=f"Contact data changed: {', '.join(changed)}",
            data={"by": actor, "reason": reason, "fields": list(changed)},
        )
        return client


def define_segment(code: str, name: str) -> Segment:
    """Create a segment, or rename the one with this code."""
    code = (code or "").strip().lower()
    if not code or not code.replace("-", "").replace("_", "").isalnum():
        raise ValidationError("A segment code is a slug.", code="invalid_slug", field="code")
    with transaction.atomic():
        segment, _ = Segment.objects.update_or_create(
            code=code, defaults={"name": v.clean_text(name, field="name", max_length=100)}
        )
        return segment


def set_segments(client_id: UUID | str, codes: Iterable[str], *, by: Any, reason: str) -> Client:
    """Put the client in exactly these (existing) segments."""
    wanted = sorted({c.strip().lower() for c in codes})
    with transaction.atomic():
        client = _locked(client_id)
        segments = list(Segment.objects.filter(code__in=wanted))
        missing = set(wanted) - {s.code for s in segments}
        if missing:
            raise ValidationError(
                f"Unknown segment: {', '.join(sorted(missing))}.",
                code="unknown_segment",
                field="segments",
            )
        before = sorted(client.segments.values_list("code", flat=True))
        if before == wanted:
            return client
        client.segments.set(segments)
        actor = actor_label(by)
        audit.record(
            actor=actor,
            action="client.set_segments",
            object_type="client",
            object_id=str(client.pk),
            reason=reason,
            before={"segments": before},
            after={"segments": wanted},
        )
        emit(ClientUpdated(client_id=client.pk, fields=("segments",)))
        record_timeline(
            client.pk,
            kind="client.segments_changed",
            summary=f"Segments: {', '.join(wanted) or 'none'}",
            data={"by": actor, "before": before, "after": wanted},
        )
        return client


def _clean_tags(names: Iterable[str]) -> list[str]:
    tags = sorted({(n or "").strip().lower() for n in names})
    for tag in tags:
        if not tag or len(tag) > 50 or not tag.replace("-", "").replace("_", "").isalnum():
            raise ValidationError(
                f"{tag!r} is not a tag (letters, digits, - and _).",
                code="invalid_tag",
                field="tags",
            )
    return tags


def tag_client(
    client_id: UUID | str,
    *,
    add: Iterable[str] = (),
    remove: Iterable[str] = (),
    by: Any,
) -> Client:
    """Add and remove tags (tags are created on first use)."""
    to_add, to_remove = _clean_tags(add), _clean_tags(remove)
    with transaction.atomic():
        client = _locked(client_id)
        before = sorted(client.tags.values_list("name", flat=True))
        for name in to_add:
            tag, _ = Tag.objects.get_or_create(name=name)
            client.tags.add(tag)
        if to_remove:
            client.tags.remove(*Tag.objects.filter(name__in=to_remove))
        after = sorted(client.tags.values_list("name", flat=True))
        if after != before:
            audit.record(
                actor=actor_label(by),
                action="client.tag",
                object_type="client",
                object_id=str(client.pk),
                before={"tags": before},
                after={"tags": after},
            )
            emit(ClientUpdated(client_id=client.pk, fields=("tags",)))
        return client


def link_platform_login(
    client_id: UUID | str,
    *,
    platform: str,
    server: str,
    login: int,
    currency: str,
    is_live: bool,
    by: Any,
    trading_account_id: UUID | None = None,
) -> PlatformLogin:
    """Link a platform login (server + login number) to the client; one login, one client."""
    if platform not in PlatformLogin.Platform.values:
        raise ValidationError(
            f"Unknown platform {platform!r}.", code="unknown_platform", field="platform"
        )
    server = v.clean_text(server, field="server", max_length=100, required=True)
    if isinstance(login, bool) or not isinstance(login, int) or login <= 0:
        raise ValidationError(
            "A login is a positive whole number.", code="invalid_login", field="login"
        )
    currency = get_currency(currency).code
    with transaction.atomic():
        client = _locked(client_id)
        existing = PlatformLogin.objects.filter(server=server, login=login).first()
        if existing is not None:
            if existing.client_id == client.pk and existing.currency == currency:
                return existing  # the same link again: nothing to do
            raise Conflict(
                f"Login {login} on {server} is already linked.",
                code="login_taken",
                field="login",
            )
        if (
            trading_account_id is not None
            and PlatformLogin.objects.filter(trading_account_id=trading_account_id).exists()
        ):
            raise Conflict(
                "That trading account is already linked to a login.",
                code="trading_account_taken",
                field="trading_account_id",
            )
        row = PlatformLogin.objects.create(
            client=client,
            platform=platform,
            server=server,
            login=login,
            currency=currency,
            is_live=is_live,
            trading_account_id=trading_account_id,
            linked_at=clock.now(),
        )
        actor = actor_label(by)
        audit.record(
            actor=actor,
            action="client.link_login",
            object_type="client",
            object_id=str(client.pk),
            after={"server": server, "login": login, "currency": currency, "is_live": is_live},
        )
        emit(
            PlatformLoginLinked(
                client_id=client.pk,
                platform=platform,
                server=server,
                login=login,
                currency=currency,
                is_live=is_live,
                trading_account_id=trading_account_id,
            )
        )
        record_timeline(
            client.pk,
            kind="client.login_linked",
            summary=f"{'Live' if is_live else 'Demo'} {platform.upper()} login {login} on "
            f"{server} ({currency})",
            data={"server": server, "login": login, "by": actor},
        )
        return row


def end_relationship(client_id: UUID | str, *, by: Any, reason: str) -> Client:
    """Record that the business relationship ended (starts the retention clock)."""
    if not reason.strip():
        raise ValidationError("A reason is required.", code="reason_required", field="reason")
    with transaction.atomic():
        client = _locked(client_id)
        if client.relationship_ended_at is not None:
            raise Conflict(
                "The relationship has already ended.", code="already_ended", field="client_id"
            )
        client.relationship_ended_at = client.updated_at = clock.now()
        client.save(update_fields=["relationship_ended_at", "updated_at"])
        actor = actor_label(by)
        audit.record(
            actor=actor,
            action="client.end_relationship",
            object_type="client",
            object_id=str(client.pk),
            reason=reason,
            after={"relationship_ended_at": client.relationship_ended_at.isoformat()},
        )
        emit(ClientUpdated(client_id=client.pk, fields=("relationship_ended_at",)))
        record_timeline(
            client.pk,
            kind="client.relationship_ended",
            summary="Relationship ended",
            data={"by": actor, "reason": reason},
        )
        return client


def record_timeline(
    client_id: UUID | str,
    *,
    kind: str,
    summary: str,
    data: Mapping[str, Any] | None = None,
    occurred_at: datetime | None = None,
    source_event_id: UUID | None = None,
) -> ClientTimelineEntry:
    """Add an entry to the client's timeline; with ``source_event_id`` a repeat is a no-op."""
    if not kind:
        raise ValidationError("A timeline entry needs a kind.", code="required", field="kind")
    with transaction.atomic():
        if source_event_id is not None:
            existing = ClientTimelineEntry.objects.filter(source_event_id=source_event_id).first()
            if existing is not None:
                return existing
        if not Client.objects.filter(pk=client_id).exists():
            raise NotFound("No such client.", code="client_not_found", field="client_id")
        return ClientTimelineEntry.objects.create(
            client_id=client_id,
            occurred_at=occurred_at or clock.now(),
            kind=kind[:100],
            summary=summary[:500],
            data=json.loads(json.dumps(dict(data or {}), default=str)),
            source_event_id=source_event_id,
        )
