"""The bonuses API router, mounted at /api/v1/bonuses/.

Clients (``/me/…``) see only their own bonuses. Staff: finance and admin manage campaigns
and grant or forfeit with a reason; auditors read.
"""

from datetime import datetime
from typing import Any
from uuid import UUID

from django.http import HttpRequest, JsonResponse
from ninja import Router, Schema, Status

from brokerdesk.bonuses import queries, services
from brokerdesk.clients.queries import client_id_for_user
from brokerdesk.staff.api import SessionUser, domain_errors, staff_only
from brokerdesk.staff.roles import Role

router = Router(tags=["bonuses"])
session = SessionUser()
MANAGE = staff_only(Role.FINANCE)
READ = staff_only(Role.FINANCE, Role.AUDITOR)


class BonusOut(Schema):
    id: UUID
    client_id: UUID
    campaign_id: UUID
    campaign_name: str
    kind: str
    currency: str
    amount: int
    unlocked: int
    forfeited: int
    remaining: int
    status: str
    progress: str
    progress_pct: int
    source: str
    reason: str
    granted_at: datetime
    expires_at: datetime | None


class HistoryOut(Schema):
    bonus_id: UUID
    at: datetime
    kind: str
    amount: int
    reason_code: str
    reason: str
    figures: dict[str, Any]


class PreviewOut(Schema):
    forfeited: int
    bonuses: list[tuple[UUID, str, int]]


class PromoIn(Schema):
    code: str


class GrantOut(Schema):
    campaign_id: UUID
    bonus_id: UUID | None
    amount: int
    replayed: bool
    refused_rule: str = ""
    refused_message: str = ""


class CampaignOut(Schema):
    id: UUID
    code: str
    version: int
    name: str
    kind: str
    trigger: str
    status: str
    currency: str
    promo_code: str
    percent_bps: int
    fixed_amount: int
    max_per_grant: int
    cap_per_client: int
    budget: int
    granted_total: int
    grants: int
    terms: dict[str, Any]


class CampaignIn(Schema):
    code: str
    name: str
    kind: str
    trigger: str
    currency: str
    terms: dict[str, Any] = {}


class StatusIn(Schema):
    status: str
    reason: str


class GrantIn(Schema):
    campaign_id: UUID
    client_id: UUID
    amount: int
    reason: str
    request_key: str


class ForfeitIn(Schema):
    reason: str
    request_key: str
    amount: int | None = None


def _me(request: HttpRequest) -> UUID | None:
    return client_id_for_user(request.user)


def _no_client() -> JsonResponse:
    return JsonResponse({"code": "not_a_client", "message": "No client record."}, status=404)


def _grant_out(outcome: services.GrantOutcome) -> dict[str, Any]:
    return {
        "campaign_id": outcome.campaign_id,
        "bonus_id": outcome.bonus_id,
        "amount": outcome.amount,
        "replayed": outcome.replayed,
        "refused_rule": outcome.refusal.rule if outcome.refusal else "",
        "refused_message": outcome.refusal.message if outcome.refusal else "",
    }


@router.get("/me", response=list[BonusOut], auth=session)
def my_bonuses(request: HttpRequest) -> Any:
    """The signed-in client's bonuses with their unlock progress."""
    client_id = _me(request)
    return _no_client() if client_id is None else queries.bonuses_of(client_id)


@router.get("/me/history", response=list[HistoryOut], auth=session)
@domain_errors
def my_history(request: HttpRequest, bonus_id: UUID | None = None) -> Any:
    """Every step of the client's bonuses, with reasons and figures."""
    client_id = _me(request)
    return _no_client() if client_id is None else queries.history_of(client_id, bonus_id=bonus_id)


@router.get("/me/forfeiture-preview", response=PreviewOut, auth=session)
@domain_errors
def my_preview(request: HttpRequest, currency: str, amount: int) -> Any:
    """What a withdrawal of ``amount`` would forfeit now."""
    client_id = _me(request)
    if client_id is None:
        return _no_client()
    return queries.forfeiture_preview(client_id, currency.upper(), amount)


@router.post("/me/promo", response=GrantOut, auth=session)
@domain_errors
def my_promo(request: HttpRequest, payload: PromoIn) -> Any:
    """Enter a promo code."""
    client_id = _me(request)
    if client_id is None:
        return _no_client()
    return _grant_out(services.redeem_promo(client_id, payload.code, by=request.user))


@router.get("/campaigns", response=list[CampaignOut], auth=READ)
def campaigns(request: HttpRequest) -> Any:
    """Every campaign version."""
    return queries.campaigns()


@router.post("/campaigns", response={201: CampaignOut}, auth=MANAGE)
@domain_errors
def create_campaign(request: HttpRequest, payload: CampaignIn) -> Any:
    """Create a campaign (finance, admin)."""
    campaign = services.create_campaign(
        code=payload.code,
        by=request.user,
        name=payload.name,
        kind=payload.kind,
        trigger=payload.trigger,
        currency=payload.currency,
        **payload.terms,
    )
    return Status(201, queries.get_campaign(campaign.id))


@router.post("/campaigns/{campaign_id}/status", response=CampaignOut, auth=MANAGE)
@domain_errors
def campaign_status(request: HttpRequest, campaign_id: UUID, payload: StatusIn) -> Any:
    """Pause, resume or end a campaign, with a reason."""
    services.set_campaign_status(
        campaign_id, payload.status, by=request.user, reason=payload.reason
    )
    return queries.get_campaign(campaign_id)


@router.get("/grants", response=list[BonusOut], auth=READ)
def grants(
    request: HttpRequest,
    campaign_id: UUID | None = None,
    client_id: UUID | None = None,
    status: str | None = None,
    kind: str | None = None,
) -> Any:
    """Grants, filtered by campaign, client, status or kind."""
    return queries.grants(campaign_id=campaign_id, client_id=client_id, status=status, kind=kind)


@router.post("/grants", response=GrantOut, auth=MANAGE)
@domain_errors
def grant(request: HttpRequest, payload: GrantIn) -> Any:
    """A manual grant with a reason (idempotent on ``request_key``)."""
    outcome = services.grant_manual(
        campaign_id=payload.campaign_id,
        client_id=payload.client_id,
        amount=payload.amount,
        reason=payload.reason,
        by=request.user,
        request_key=payload.request_key,
    )
    return _grant_out(outcome)


@router.post("/bonuses/{bonus_id}/forfeit", auth=MANAGE)
@domain_errors
def forfeit(request: HttpRequest, bonus_id: UUID, payload: ForfeitIn) -> Any:
    """Forfeit all (or ``amount``) of what is left of a bonus, with a reason."""
    removed = services.forfeit_manual(
        bonus_id,
        reason=payload.reason,
        by=request.user,
        request_key=payload.request_key,
        amount=payload.amount,
    )
    return {"forfeited": removed}


@router.get("/bonuses/{bonus_id}/history", response=list[HistoryOut], auth=READ)
@domain_errors
def bonus_history(request: HttpRequest, bonus_id: UUID) -> Any:
    """One bonus's history (staff)."""
    bonus = queries.get_bonus(bonus_id)
    return queries.history_of(bonus.client_id, bonus_id=bonus_id, staff=True)
