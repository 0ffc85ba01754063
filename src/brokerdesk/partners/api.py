"""The partners API: the IB portal (``/me/…``, the signed-in IB's own subtree only), referral
tokens, and staff commands (hierarchy, plans, reassignment, accrual states, payouts,
adjustments, dispute evidence)."""

from dataclasses import asdict
from datetime import date, datetime
from typing import Any
from uuid import UUID

from django.http import HttpRequest
from ninja import Router, Schema, Status

from brokerdesk.core.errors import NotFound
from brokerdesk.partners import accrual, attribution, hierarchy, plans, queries
from brokerdesk.partners.models import IB
from brokerdesk.staff.api import SessionUser, domain_errors, staff_only
from brokerdesk.staff.roles import Role

router = Router(tags=["partners"])
session = SessionUser()
MANAGERS = (Role.PARTNER_MANAGER,)
MONEY = (Role.PARTNER_MANAGER, Role.FINANCE)


def _me(request: HttpRequest) -> UUID:
    ib_id = queries.ib_id_for_user(request.user)
    if ib_id is None:
        raise NotFound("You are not a partner.", code="ib_not_found")
    return ib_id


class IBIn(Schema):
    code: str
    name: str
    parent_id: UUID | None = None
    currency: str = "USD"
    user_id: int | None = None


class IBOut(Schema):
    id: UUID
    code: str
    name: str
    parent_id: UUID | None
    depth: int
    status: str
    currency: str


class MoveIn(Schema):
    new_parent_id: UUID | None
    reason: str


class PlanIn(Schema):
    code: str
    name: str
    currency: str
    rules: dict[str, Any]


class VersionIn(Schema):
    rules: dict[str, Any]
    reason: str
    valid_from: datetime | None = None


class AssignIn(Schema):
    plan_id: UUID
    reason: str = ""


class ReassignIn(Schema):
    client_id: UUID
    to_ib_id: UUID
    reason: str


class DecisionIn(Schema):
    reason: str = ""


class IdsIn(Schema):
    ids: list[UUID]
    to_state: str
    reason: str = ""


class PayoutIn(Schema):
    request_key: str
    currency: str | None = None


class AdjustIn(Schema):
    amount: int
    reason: str
    request_key: str
    adjusts: UUID | None = None


def _ib_out(ib: IB) -> dict[str, Any]:
    return {
        "id": ib.pk,
        "code": ib.code,
        "name": ib.name,
        "parent_id": ib.parent_id,
        "depth": ib.depth,
        "status": ib.status,
        "currency": ib.currency,
    }


# ---------------------------------------------------------------------------- public


@router.get("/r/{code}", auth=None)
@domain_errors
def referral(request: HttpRequest, code: str) -> Any:
    """A signed referral token for a click on ``code`` (the site keeps it until sign-up)."""
    return {"token": attribution.referral_token(code)}


# ---------------------------------------------------------------------------- the IB portal


@router.get("/me/today", auth=session)
@domain_errors
def my_today(request: HttpRequest) -> Any:
    """Today's activity by level."""
    me = _me(request)
    return [asdict(a) for a in queries.today(me, viewer=me)]


@router.get("/me/earnings", auth=session)
@domain_errors
def my_earnings(
    request: HttpRequest,
    start: datetime,
    end: datetime,
    by: str = "level",
    ib_id: UUID | None = None,
) -> Any:
    """Earnings of the IB (or one of its sub-IBs) by level, client, day, state or kind."""
    me = _me(request)
    rows = queries.earnings(ib_id or me, viewer=me, start=start, end=end, by=by)
    return [asdict(r) for r in rows]


@router.get("/me/tree", auth=session)
@domain_errors
def my_tree(request: HttpRequest, start: date, end: date) -> Any:
    """The sub-IB tree with each IB's production."""
    me = _me(request)
    return [asdict(r) for r in queries.sub_ib_tree(me, viewer=me, start=start, end=end)]


@router.get("/me/clients", auth=session)
@domain_errors
def my_clients(
    request: HttpRequest, start: datetime, end: datetime, include_subtree: bool = False
) -> Any:
    """Clients (privacy-limited) with volume and earnings."""
    me = _me(request)
    rows = queries.clients(me, viewer=me, start=start, end=end, include_subtree=include_subtree)
    return [asdict(r) for r in rows]


@router.get("/me/evidence", auth=session)
@domain_errors
def my_evidence(
    request: HttpRequest, start: datetime, end: datetime, client_id: UUID | None = None
) -> Any:
    """Deals, rule versions and computation behind the IB's amounts (and exclusions)."""
    me = _me(request)
    return asdict(queries.evidence(me, viewer=me, start=start, end=end, client_id=client_id))


# ---------------------------------------------------------------------------- staff


@router.post("/ibs", response={201: IBOut}, auth=staff_only(*MANAGERS))
@domain_errors
def create_ib(request: HttpRequest, payload: IBIn) -> Any:
    """Create an IB (under a parent)."""
    ib = hierarchy.create_ib(**payload.dict(), by=request.user)
    return Status(201, _ib_out(ib))


@router.post("/ibs/{ib_id}/move", response=IBOut, auth=staff_only(*MANAGERS))
@domain_errors
def move_ib(request: HttpRequest, ib_id: UUID, payload: MoveIn) -> Any:
    """Move an IB and its subtree."""
    ib = hierarchy.move_subtree(
        ib_id, payload.new_parent_id, by=request.user, reason=payload.reason
    )
    return _ib_out(ib)


@router.post("/plans", auth=staff_only(*MANAGERS))
@domain_errors
def create_plan(request: HttpRequest, payload: PlanIn) -> Any:
    """Create a plan with its first version."""
    v = plans.create_plan(**payload.dict(), by=request.user)
    return {"plan_id": v.plan_id, "version": v.number, "valid_from": v.valid_from}


@router.post("/plans/{plan_id}/versions", auth=staff_only(*MANAGERS))
@domain_errors
def publish_version(request: HttpRequest, plan_id: UUID, payload: VersionIn) -> Any:
    """Publish a new version (forward only)."""
    v = plans.publish_version(plan_id, **payload.dict(), by=request.user)
    return {"plan_id": v.plan_id, "version": v.number, "valid_from": v.valid_from}


@router.post("/ibs/{ib_id}/plan", auth=staff_only(*MANAGERS))
@domain_errors
def assign_plan(request: HttpRequest, ib_id: UUID, payload: AssignIn) -> Any:
    """Put an IB on a plan from now on."""
    a = plans.assign_plan(ib_id, payload.plan_id, by=request.user, reason=payload.reason)
    return {"ib_id": a.ib_id, "plan_id": a.plan_id, "valid_from": a.valid_from}


@router.post("/reassignments", auth=staff_only(*MANAGERS))
@domain_errors
def reassign(request: HttpRequest, payload: ReassignIn) -> Any:
    """Assign or reassign a client (pending a second approver once funded)."""
    r = attribution.request_reassignment(
        payload.client_id, payload.to_ib_id, by=request.user, reason=payload.reason
    )
    return {"id": r.pk, "state": r.state, "funded": r.funded}


@router.post("/reassignments/{request_id}/approve", auth=staff_only(*MANAGERS))
@domain_errors
def approve_reassignment(request: HttpRequest, request_id: UUID, payload: DecisionIn) -> Any:
    """Second approver applies a pending reassignment."""
    a = attribution.approve_reassignment(request_id, by=request.user, reason=payload.reason)
    return {"client_id": a.client_id, "ib_id": a.ib_id}


@router.post("/accruals/transition", auth=staff_only(*MONEY))
@domain_errors
def transition(request: HttpRequest, payload: IdsIn) -> Any:
    """Move accruals along the state machine (all or none)."""
    rows = accrual.transition(payload.ids, payload.to_state, by=request.user, reason=payload.reason)
    return {"moved": len(rows), "state": payload.to_state}


@router.post("/ibs/{ib_id}/payouts", auth=staff_only(Role.FINANCE))
@domain_errors
def payout(request: HttpRequest, ib_id: UUID, payload: PayoutIn) -> Any:
    """Pay an IB's payable accruals into its wallet."""
    p = accrual.pay_ib(
        ib_id, by=request.user, request_key=payload.request_key, currency=payload.currency
    )
    return {"id": p.pk, "amount": p.amount, "currency": p.currency}


@router.post("/ibs/{ib_id}/adjustments", auth=staff_only(*MANAGERS))
@domain_errors
def adjust(request: HttpRequest, ib_id: UUID, payload: AdjustIn) -> Any:
    """A reasoned, audited compensating adjustment."""
    a = accrual.adjust(ib_id, **payload.dict(), by=request.user)
    return {"id": a.pk, "amount": a.amount, "currency": a.currency}


@router.get("/ibs/{ib_id}/evidence", auth=staff_only(*Role))
@domain_errors
def evidence(
    request: HttpRequest,
    ib_id: UUID,
    start: datetime,
    end: datetime,
    client_id: UUID | None = None,
) -> Any:
    """Dispute evidence for any IB, period and client."""
    return asdict(queries.evidence(ib_id, viewer=None, start=start, end=end, client_id=client_id))
