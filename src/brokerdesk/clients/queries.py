"""Read side of the clients module: clients, their logins and their timeline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError as DjangoValidationError

from brokerdesk.clients.models import Client, ClientTimelineEntry, PlatformLogin
from brokerdesk.core.errors import NotFound


@dataclass(frozen=True)
class ClientView:
    """A client as screens and other modules see it."""

    id: UUID
    kind: str
    display_name: str
    email: str
    phone: str
    country: str
    nationality: str
    jurisdiction: str
    date_of_birth: date | None
    company_name: str
    registration_number: str
    segments: tuple[str, ...]
    tags: tuple[str, ...]
    user_id: int | None
    registered_at: datetime
    relationship_ended_at: datetime | None
    address_line: str = ""
    city: str = ""
    postal_code: str = ""
    preferred_language: str = ""


@dataclass(frozen=True)
class LoginView:
    """A platform login linked to a client."""

    client_id: UUID
    platform: str
    server: str
    login: int
    currency: str
    is_live: bool
    trading_account_id: UUID | None


@dataclass(frozen=True)
class TimelineItem:
    """One entry of a client's timeline."""

    occurred_at: datetime
    kind: str
    summary: str
    data: dict[str, Any]


def _view(client: Client) -> ClientView:
    return ClientView(
        id=client.pk,
        kind=client.kind,
        display_name=client.display_name,
        email=client.email,
        phone=client.phone,
        country=str(client.country),
        nationality=str(client.nationality or ""),
        jurisdiction=client.jurisdiction,
        date_of_birth=client.date_of_birth,
        company_name=client.company_name,
        registration_number=client.registration_number,
        segments=tuple(sorted(s.code for s in client.segments.all())),
        tags=tuple(sorted(t.name for t in client.tags.all())),
        user_id=client.user_id,
        registered_at=client.registered_at,
        relationship_ended_at=client.relationship_ended_at,
        address_line=client.address_line,
        city=client.city,
        postal_code=client.postal_code,
        preferred_language=client.preferred_language,
    )


def get_client(client_id: UUID | str) -> ClientView:
    """The client, or ``NotFound``."""
    try:
        client = Client.objects.prefetch_related("segments", "tags").get(pk=client_id)
    except (Client.DoesNotExist, ValueError, DjangoValidationError):
        raise NotFound("No such client.", code="client_not_found", field="client_id") from None
    return _view(client)


def client_exists(client_id: UUID | str) -> bool:
    """True when the client exists."""
    try:
        return Client.objects.filter(pk=client_id).exists()
    except (ValueError, DjangoValidationError):
        return False


def client_id_for_user(user: Any) -> UUID | None:
    """The client a signed-in user is, or ``None`` (staff, anonymous)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return Client.objects.filter(user_id=user.pk).values_list("id", flat=True).first()


def search_clients(text: str = "", *, limit: int = 50) -> list[ClientView]:
    """Clients whose name, company or e-mail contains ``text``, newest first."""
    from django.db.models import Q

    qs = Client.objects.prefetch_related("segments", "tags").order_by("-registered_at")
    if text:
        qs = qs.filter(
            Q(email__icontains=text)
            | Q(last_name__icontains=text)
            | Q(first_name__icontains=text)
            | Q(company_name__icontains=text)
        )
    return [_view(c) for c in qs[:limit]]


def logins_of(client_id: UUID | str) -> list[LoginView]:
    """The client's platform logins, oldest first."""
    return [
        _login(row)
        for row in PlatformLogin.objects.filter(client_id=client_id).order_by("linked_at", "id")
    ]


def _login(row: PlatformLogin) -> LoginView:
    return LoginView(
        client_id=row.client_id,
        platform=row.platform,
        server=row.server,
        login=row.login,
        currency=row.currency,
        is_live=row.is_live,
        trading_account_id=row.trading_account_id,
    )


def client_for_login(server: str, login: int) -> LoginView | None:
    """Who owns ``login`` on ``server`` (the bridge asks this for every platform event)."""
    row = PlatformLogin.objects.filter(server=server, login=login).first()
    return _login(row) if row else None


def timeline(
    client_id: UUID | str, *, limit: int = 100, before: datetime | None = None
) -> list[TimelineItem]:
    """The client's timeline, newest first (page with ``before``)."""
    qs = ClientTimelineEntry.objects.filter(client_id=client_id)
    if before is not None:
        qs = qs.filter(occurred_at__lt=before)
    return [
        TimelineItem(occurred_at=e.occurred_at, kind=e.kind, summary=e.summary, data=e.data)
        for e in qs.order_by("-occurred_at", "-id")[:limit]
    ]


def can_view_client(user: Any, client_id: UUID | str) -> bool:
    """Staff with any role see every client; a client's own login sees only that client."""
    from brokerdesk.staff.roles import is_staff_member

    if is_staff_member(user):
        return True
    own = client_id_for_user(user)
    return own is not None and str(own) == str(client_id)


def ended_relationships(*, ended_before: datetime) -> list[tuple[UUID, str, datetime]]:
    """(client id, jurisdiction, end time) of relationships that ended before ``ended_before``."""
    return [
        (cid, jurisdiction, ended)
        for cid, jurisdiction, ended in Client.objects.filter(
            relationship_ended_at__lt=ended_before
        )
        .order_by("relationship_ended_at")
        .values_list("id", "jurisdiction", "relationship_ended_at")
        if ended is not None
    ]


def client_ids_in_batches(batch_size: int = 1000, *, with_jurisdiction: bool = False) -> Any:
    """Every client id (with its jurisdiction when asked), in id order, batch by batch."""
    last: UUID | None = None
    while True:
        qs = Client.objects.order_by("id")
        if last is not None:
            qs = qs.filter(id__gt=last)
        rows: list[tuple[UUID, str]] = list(qs.values_list("id", "jurisdiction")[:batch_size])
        if not rows:
            return
        last = rows[-1][0]
        if with_jurisdiction:
            yield rows
        else:
            yield [r[0] for r in rows]


def client_count() -> int:
    """How many clients there are."""
    return Client.objects.count()


def screening_rows() -> Any:
    """(id, kind, display name, date of birth, country, nationality) of every client."""
    rows = Client.objects.order_by("id").values_list(
        "id",
        "kind",
        "first_name",
        "last_name",
        "company_name",
        "date_of_birth",
        "country",
        "nationality",
    )
    for cid, kind, first, last, company, born, country, nationality in rows.iterator(5000):
        name = company if kind == "corporate" else f"{first} {last}".strip()
        yield cid, kind, name, born, str(country or ""), str(nationality or "")


def registrations_by_day(start: datetime, end: datetime) -> list[tuple[date, int]]:
    """How many clients registered on each UTC day in [start, end) (days with none left out)."""
    from django.db.models import Count
    from django.db.models.functions import TruncDate

    rows = (
        Client.objects.filter(registered_at__gte=start, registered_at__lt=end)
        .annotate(day=TruncDate("registered_at"))
        .values("day")
        .annotate(n=Count("id"))
        .order_by("day")
    )
    return [(row["day"], int(row["n"])) for row in rows]
