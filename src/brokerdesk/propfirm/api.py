"""The propfirm API router, mounted at /api/v1/propfirm/.

Clients (session): the products on sale, their own challenges with rule meters, buying one,
asking for a payout. Staff with the dealing role (admin holds every role): every challenge,
manual decisions, products. Money is integer minor units; rules are basis points.
"""

from datetime import datetime
from typing import Any
from uuid import UUID

from django.http import HttpRequest
from ninja import Field, Router, Schema, Status

from brokerdesk.clients.queries import client_id_for_user
from brokerdesk.core.errors import PermissionDenied
from brokerdesk.propfirm import queries, services
from brokerdesk.staff.api import SessionUser, domain_errors, staff_only
from brokerdesk.staff.roles import Role

router = Router(tags=["propfirm"])
SIGNED_IN = SessionUser()
DEALING = staff_only(Role.DEALING)


class PhaseRulesIO(Schema):
    name: str
    daily_loss_bps: int | None = None
    max_loss_bps: int | None = None
    max_loss_mode: str = "static"
    profit_target_bps: int | None = None
    min_trading_days: int = 0
    time_limit_days: int | None = None
    consistency_bps: int | None = None
    funded: bool = False


class ProductOut(Schema):
    id: UUID
    code: str
    version: int
    name: str
    active: bool
    price: int
    currency: str
    account_size: int
    profit_split_bps: int
    server: str
    platform_group: str
    leverage: int
    phases: list[PhaseRulesIO]


class ProductIn(Schema):
    code: str
    name: str
    price: int
    currency: str
    account_size: int
    profit_split_bps: int = 8000
    server: str = "sim"
    platform_group: str = "demo\\standard"
    leverage: int = 100
    phases: list[PhaseRulesIO]


class ProductChanges(Schema):
    name: str | None = None
    price: int | None = None
    account_size: int | None = None
    profit_split_bps: int | None = None
    server: str | None = None
    platform_group: str | None = None
    leverage: int | None = None
    phases: list[PhaseRulesIO] | None = None


class ActiveIn(Schema):
    active: bool


class MeterOut(Schema):
    key: str
    label: str
    value: int
    limit: int
    percent: int
    text: str
    met: bool


class PhaseOut(Schema):
    id: UUID
    phase_index: int
    phase_name: str
    funded: bool
    status: str
    server: str
    login: int | None
    account_size: int
    started_at: datetime | None
    deadline: datetime | None
    ended_at: datetime | None
    rule: str
    figures: dict[str, Any]
    decision: str
    balance: int
    equity: int | None
    profit: int
    trading_days: int
    paid_out: int
    meters: list[MeterOut]


class ChallengeOut(Schema):
    id: UUID
    client_id: str
    product_id: UUID
    product_name: str
    product_version: int
    status: str
    price: int
    currency: str
    created_at: datetime
    phases: list[PhaseOut]


class PurchaseIn(Schema):
    product_id: UUID
    request_id: str = Field(..., min_length=1, max_length=150)


class PayoutIn(Schema):
    request_id: str = Field(..., min_length=1, max_length=150)
    method_id: UUID | None = None


class PayoutOut(Schema):
    id: UUID
    state: str
    currency: str
    profit: int
    trader_share: int
    firm_share: int
    split_bps: int
    withdrawal_id: UUID | None
    error: str


class DecisionIn(Schema):
    outcome: str
    reason: str


def _client(request: HttpRequest) -> UUID:
    client_id = client_id_for_user(request.user)
    if client_id is None:
        raise PermissionDenied("Only clients have challenges.", code="not_a_client")
    return client_id


@router.get("/products", response=list[ProductOut], auth=SIGNED_IN)
def list_products(request: HttpRequest) -> Any:
    """The products on sale."""
    return queries.products()


@router.get("/challenges", response=list[ChallengeOut], auth=SIGNED_IN)
def my_challenges(request: HttpRequest) -> Any:
    """The signed-in client's challenges with their rule meters."""
    return queries.challenges_of(_client(request))


@router.post("/challenges", response={201: ChallengeOut}, auth=SIGNED_IN)
@domain_errors
def buy(request: HttpRequest, payload: PurchaseIn) -> Any:
    """Buy a challenge from the wallet's cash (the same request_id buys once)."""
    client_id = _client(request)
    challenge = services.purchase_challenge(
        client_id, payload.product_id, request_id=payload.request_id, by=request.user
    )
    return Status(201, queries.challenge_of(client_id, challenge.id))


@router.post("/accounts/{account_id}/payout", response={201: PayoutOut}, auth=SIGNED_IN)
@domain_errors
def payout(request: HttpRequest, account_id: UUID, payload: PayoutIn) -> Any:
    """The profit share of the client's funded account (optionally withdrawn to a method)."""
    paid = services.request_payout(
        account_id,
        client_id=_client(request),
        request_id=payload.request_id,
        by=request.user,
        method_id=payload.method_id,
    )
    return Status(201, paid)


@router.get("/staff/challenges", response=list[ChallengeOut], auth=DEALING)
def staff_challenges(request: HttpRequest, status: str | None = None) -> Any:
    """Every challenge (dealing), newest first, optionally by status."""
    return queries.all_challenges(status=status)


@router.post("/staff/accounts/{account_id}/decide", response=ChallengeOut, auth=DEALING)
@domain_errors
def decide(request: HttpRequest, account_id: UUID, payload: DecisionIn) -> Any:
    """Fail or pass an active phase by hand, with a reason."""
    account = services.decide_manually(
        account_id, payload.outcome, reason=payload.reason, by=request.user
    )
    return queries.challenge(account.challenge_id)


@router.get("/staff/products", response=list[ProductOut], auth=DEALING)
def staff_products(request: HttpRequest) -> Any:
    """Every product version."""
    return queries.products(active_only=False)


@router.post("/staff/products", response={201: ProductOut}, auth=DEALING)
@domain_errors
def create(request: HttpRequest, payload: ProductIn) -> Any:
    """Create a product (version 1)."""
    data = payload.dict()
    data["phases"] = [p.dict() for p in payload.phases]
    product = services.create_product(by=request.user, **data)
    return Status(201, queries.product(product.id))


@router.post("/staff/products/{product_id}/revise", response={201: ProductOut}, auth=DEALING)
@domain_errors
def revise(request: HttpRequest, product_id: UUID, payload: ProductChanges) -> Any:
    """Write the next version of a product with the changes given."""
    changes = {k: v for k, v in payload.dict().items() if v is not None}
    if payload.phases is not None:
        changes["phases"] = [p.dict() for p in payload.phases]
    product = services.revise_product(product_id, by=request.user, **changes)
    return Status(201, queries.product(product.id))


@router.post("/staff/products/{product_id}/active", response=ProductOut, auth=DEALING)
@domain_errors
def activate(request: HttpRequest, product_id: UUID, payload: ActiveIn) -> Any:
    """Start or stop selling a product version."""
    product = services.set_product_active(product_id, payload.active, by=request.user)
    return queries.product(product.id)
