"""Payments commands: deposits, withdrawals, PSP webhooks and the exceptions queue.

Every command runs in one transaction that writes our rows, the ledger postings, the timeline
step, the audit entry and the outbox event together. Money commands are idempotent: a deposit
or withdrawal request carries a request id (unique), ledger postings are keyed by the payment's
reference, and webhooks pass through an inbox unique on (provider, event id) — a second
delivery of an event is recorded as a duplicate and posts nothing.

Ledger postings (minor units, one currency each):

- deposit confirmed: PSP clearing → client ``pending``; fee: ``pending`` → ``fee_income``;
  available (no hold rule): ``pending`` → ``cash``. A held deposit is released later.
- chargeback / failed settlement: every posting of the deposit reversed (linked, compensating).
- withdrawal requested: ``cash`` → ``locked``; paid: ``locked`` → PSP clearing; rejected or
  failed: ``locked`` → ``cash``; returned after payment: PSP clearing → ``cash``.
- in another currency than the wallet's: the deposit's credit is converted (FX sell, buy and
  fee legs) in the same linked chain; a withdrawal's payout is fixed at request time and
  converted when paid (a return reverses that chain); the rate and its day are recorded.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, replace
from dataclasses import field as _field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from django.db.models import Sum
from django.utils.translation import gettext as _

from brokerdesk.clients.queries import get_client
from brokerdesk.compliance.queries import may, risk_score
from brokerdesk.core import audit, clock
from brokerdesk.core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from brokerdesk.core.events import emit
from brokerdesk.core.ids import new_id
from brokerdesk.core.metrics import IDEMPOTENT_REPLAYS
from brokerdesk.core.money import MAX_MINOR_UNITS, get_currency
from brokerdesk.ledger import services as ledger
from brokerdesk.ledger.errors import InsufficientFunds
from brokerdesk.payments import connectors, states
from brokerdesk.payments.connectors.base import NormalizedEvent, ProviderError
from brokerdesk.payments.events import (
    DepositConfirmed,
    DepositReversed,
    WithdrawalApproved,
    WithdrawalPaid,
    WithdrawalRequested,
    WithdrawalReturned,
)
from brokerdesk.payments.models import (
    Deposit,
    InboxEvent,
    PaymentEvent,
    PaymentMethod,
    ReconciliationException,
    WalletConversion,
    Withdrawal,
)
from brokerdesk.payments.rates import EcbRates, RateProvider, fx_amounts
from brokerdesk.payments.rates import provider as rate_provider
from brokerdesk.staff.roles import Role, actor_label, ensure_different_approver, require_role

# ----------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rules:
    """Availability, fee and approval rules (amounts in minor units of the payment currency)."""

    first_deposit_review_above: int | None = 500_000  # a first deposit above this is held
    velocity_max_count: int = 5  # more confirmed deposits than this in the window are held
    velocity_window: timedelta = timedelta(hours=24)
    deposit_fee_bps: int = 0  # our fee to the client, posted to fee_income
    deposit_fee_fixed: int = 0
    auto_approve_up_to: int = 100_000  # withdrawals up to this are approved automatically…
    auto_approve_max_risk: int = 19  # …when the client's risk score is at most this
    fx_fee_bps: int = 50  # our fee on wallet conversions, in the bought currency
    # per provider: how its settlement files are reconciled (``SettlementTerms``)
    settlement: dict[str, SettlementTerms] = _field(default_factory=dict)


@dataclass(frozen=True)
class SettlementTerms:
    """A PSP's settlement terms, as reconciliation checks them (amounts in minor units)."""

    amount_tolerance: int = 0  # settled vs payment amount: the larger of this and the bps
    amount_tolerance_bps: int = 0
    fee_bps: int | None = None  # the PSP's expected fee (None: not checked)
    fee_fixed: int = 0
    fee_tolerance: int = 0
    reserve_bps: int = 0  # withheld from each payment when the file has no reserve
    reserve_days: int = 0  # a reserve is due for release this many days after settlement
    settlement_days: int = 2  # T+N: settled at most N days after the payment


def settlement_terms(provider: str) -> SettlementTerms:
    """The settlement terms in force for ``provider`` (the defaults when none are set)."""
    return RULES.settlement.get(provider) or SettlementTerms()


RULES = Rules()


def rules() -> Rules:
    """The rules in force."""
    return RULES


def set_rules(**changes: Any) -> Rules:
    """Change the rules in force (process-wide); return the previous ones."""
    global RULES
    previous = RULES
    RULES = replace(RULES, **changes)
    return previous


# ----------------------------------------------------------------------------- views


@dataclass(frozen=True)
class DepositView:
    """A deposit as callers see it."""

    id: UUID
    reference: str
    client_id: UUID
    provider: str
    amount: int
    currency: str
    fee: int
    status: str
    pay_url: str
    provider_id: str
    hold_reason: str
    replayed: bool = False
    wallet_currency: str = ""  # the wallet credited (the paid currency unless converted)
    wallet_amount: int = 0  # credited to it before our deposit fee (converted, after FX fee)
    fx_rate: Decimal | None = None  # paid → wallet currency, fixed at confirmation
    fx_rate_day: str | None = None
    fx_fee: int = 0  # in the wallet currency


@dataclass(frozen=True)
class WithdrawalView:
    """A withdrawal as callers see it."""

    id: UUID
    reference: str
    client_id: UUID
    provider: str
    method_id: UUID
    amount: int
    currency: str
    status: str
    provider_id: str
    requested_by: str
    approved_by: str
    replayed: bool = False
    wallet_currency: str = ""  # the wallet debited (amount/currency: what is paid out)
    wallet_amount: int = 0
    fx_rate: Decimal | None = None  # wallet → payout currency, fixed at request time
    fx_rate_day: str | None = None
    fx_fee: int = 0  # in the payout currency


def deposit_view(d: Deposit, *, replayed: bool = False) -> DepositView:
    """The view of a deposit row."""
    wallet: tuple[str, int, Decimal | None, str | None, int] = (*wallet_side(d), *_fx_view(d))
    return DepositView(
        d.id,
        d.reference,
        d.client_id,
        d.provider,
        d.amount,
        d.currency,
        d.fee,
        d.status,
        d.pay_url,
        d.provider_id,
        d.hold_reason,
        replayed,
        *wallet,
    )


def withdrawal_view(w: Withdrawal, *, replayed: bool = False) -> WithdrawalView:
    """The view of a withdrawal row."""
    wallet: tuple[str, int, Decimal | None, str | None, int] = (*wallet_side(w), *_fx_view(w))
    return WithdrawalView(
        w.id,
        w.reference,
        w.client_id,
        w.provider,
        w.method_id,
        w.amount,
        w.currency,
        w.status,
        w.provider_id,
        w.requested_by,
        w.approved_by,
        replayed,
        *wallet,
    )


def converts(p: Deposit | Withdrawal) -> bool:
    """Whether the payment's wallet currency differs from the provider's currency."""
    return bool(p.wallet_currency) and p.wallet_currency != p.currency


def wallet_side(p: Deposit | Withdrawal) -> tuple[str, int]:
    """The wallet currency and amount a payment moves (its own unless converted; a converting
    deposit's amount is known once confirmed)."""
    if converts(p):
        return p.wallet_currency, p.wallet_amount
    return p.currency, p.amount


def _fx_view(p: Deposit | Withdrawal) -> tuple[Decimal | None, str | None, int]:
    if not p.fx.get("rate"):
        return None, None, 0
    return Decimal(p.fx["rate"]), p.fx.get("rate_day"), int(p.fx.get("fee", 0))


def _quote(sell: str, buy: str, rates: RateProvider | None) -> dict[str, Any]:
    """The rate (from the rates port) and FX fee to record for a conversion."""
    quote = (rates or rate_provider()).rate(sell, buy)
    return {
        "rate": str(quote.rate),
        "rate_day": quote.day.isoformat() if quote.day else None,
        "fee_bps": rules().fx_fee_bps,
        "pair": f"{sell}/{buy}",
    }


# ----------------------------------------------------------------------------- helpers


def _check_amount(amount: Any, name: str = "amount") -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValidationError(
            "Amounts are whole numbers of minor units.", code="not_integer", field=name
        )
    if amount <= 0:
        raise ValidationError("The amount must be positive.", code="not_positive", field=name)
    if amount > MAX_MINOR_UNITS:
        raise ValidationError("The amount is too large.", code="too_large", field=name)
    return amount


def _check_key(key: str, name: str = "request_id") -> str:
    if not isinstance(key, str) or not key.strip() or len(key) > 200:
        raise ValidationError(
            "A request id (1-200 characters) makes the request idempotent.",
            code="request_id_required",
            field=name,
        )
    return key


def _step(
    kind: str,
    payment: Deposit | Withdrawal,
    to_status: str,
    *,
    actor: str,
    reason: str,
    table: dict[str, frozenset[str]],
    data: dict[str, Any] | None = None,
) -> None:
    """Move ``payment`` to ``to_status`` (checked), put the step on its timeline, audit it."""
    before = payment.status
    states.check(table, kind, before, to_status)
    now = clock.now()
    payment.status = to_status
    payment.updated_at = now
    payment.save()
    PaymentEvent.objects.create(
        payment_type=kind,
        payment_id=payment.id,
        from_status=before,
        to_status=to_status,
        actor=actor,
        reason=reason[:300],
        data=data or {},
        occurred_at=now,
    )
    audit.record(
        actor=actor,
        action=f"payments.{kind}.{to_status}",
        object_type=kind,
        object_id=str(payment.id),
        reason=reason,
        before={"status": before},
        after={"status": to_status, **(data or {})},
    )


def _opened(
    kind: str,
    payment: Deposit | Withdrawal,
    *,
    actor: str,
    reason: str,
    data: dict[str, Any] | None = None,
) -> None:
    PaymentEvent.objects.create(
        payment_type=kind,
        payment_id=payment.id,
        from_status="",
        to_status=payment.status,
        actor=actor,
        reason=reason,
        data={"amount": payment.amount, "currency": payment.currency, **(data or {})},
        occurred_at=payment.created_at,
    )
    audit.record(
        actor=actor,
        action=f"payments.{kind}.{payment.status}",
        object_type=kind,
        object_id=str(payment.id),
        reason=reason,
        after={"status": payment.status, "amount": payment.amount, "currency": payment.currency},
    )


def clearing_account(provider: str, currency: str) -> UUID:
    """The ledger account money from ``provider`` clears through (bank wires: ``bank``)."""
    if provider == "bank":
        return ledger.system_account("bank", currency).id
    return ledger.system_account("psp_clearing", currency, qualifier=provider).id


def open_exception(kind: str, reference: str, detail: str, **data: Any) -> None:
    """Put an exception (not tied to a reconciliation run) in the queue."""
    now = clock.now()
    ReconciliationException.objects.create(
        kind=kind,
        reference=reference[:64],
        detail=detail[:500],
        data=data,
        created_at=now,
        updated_at=now,
    )


def _method(client_id: UUID, provider: str, kind: str, token: str) -> PaymentMethod | None:
    if not token:
        return None
    method = PaymentMethod.objects.filter(
        client_id=client_id, provider=provider, token=token
    ).first()
    if method is None:
        method = PaymentMethod.objects.create(
            client_id=client_id,
            provider=provider,
            kind=kind,
            token=token[:200],
            created_at=clock.now(),
        )
    return method


def deposited_total(client_id: UUID, currency: str) -> int:
    """What the client has deposited in ``currency`` so far (confirmed or held)."""
    total = Deposit.objects.filter(
        client_id=client_id, currency=currency, status__in=("confirmed", "held")
    ).aggregate(s=Sum("amount"))["s"]
    return int(total or 0)


# ----------------------------------------------------------------------------- deposits


def create_deposit_intent(
    client_id: UUID | str,
    *,
    amount: int,
    currency: str,
    request_id: str,
    by: Any,
    provider: str = "sandbox",
    method_token: str = "",
    method_kind: str = "card",
    wallet_currency: str | None = None,
) -> DepositView:
    """Open a deposit intent (checked with the ``deposit`` policy) and create it at the PSP.

    ``amount``/``currency`` are what the client pays at the PSP; ``wallet_currency`` (default:
    the same) is the wallet credited — paid in another currency, the confirmation converts
    at the rate of that moment (``_confirm_converting``).
    The same ``request_id`` returns the first intent (``replayed=True``); with a different
    request it is a ``Conflict``. The client pays on ``pay_url``; the PSP's webhook confirms.
    """
    amount = _check_amount(amount)
    currency = get_currency(currency).code
    wallet = get_currency(wallet_currency).code if wallet_currency else currency
    wallet = "" if wallet == currency else wallet
    request_id = _check_key(request_id)
    actor = actor_label(by)
    client = get_client(client_id)
    connector = connectors.get(provider)
    existing = Deposit.objects.filter(request_key=request_id).first()
    if existing is not None:
        replayed = _replayed_deposit(existing, client.id, amount, currency, provider, wallet)
        if existing.status == "initiated" and not existing.provider_id:
            # the first attempt stopped between our row and the PSP's answer: finish it
            return _create_at_provider(existing, connector, actor)
        return replayed
    decision = may(
        client.id, "deposit", amount=amount, currency=currency, deposited_total=deposited_total
    )
    if not decision.allowed:
        field = "amount" if decision.limit_remaining is not None else "client_id"
        raise PermissionDenied(decision.reason, code=decision.reason_code, field=field)
    if wallet:  # a pair without a rate, or too small an amount, is refused now
        quote = rate_provider().rate(currency, wallet)
        fx_amounts(amount, currency, wallet, quote.rate, rules().fx_fee_bps)
    now = clock.now()
    with transaction.atomic():
        deposit = Deposit.objects.filter(request_key=request_id).first()
        if deposit is not None:  # a concurrent twin won
            return _replayed_deposit(deposit, client.id, amount, currency, provider, wallet)
        method = _method(client.id, provider, method_kind, method_token)
        deposit = Deposit.objects.create(
            request_key=request_id,
            reference=f"dep_{new_id().hex}",
            client_id=client.id,
            provider=provider,
            method=method,
            amount=amount,
            currency=currency,
            wallet_currency=wallet,
            status="initiated",
            created_by=actor,
            created_at=now,
            updated_at=now,
        )
        _opened(
            "deposit",
            deposit,
            actor=actor,
            reason="deposit intent",
            data={"wallet_currency": wallet} if wallet else None,
        )
    return _create_at_provider(deposit, connector, actor)


def _create_at_provider(deposit: Deposit, connector: Any, actor: str) -> DepositView:
    """Create the intent's payment at the PSP (idempotent there on our reference) and record
    its id and pay URL; a refusal fails the intent."""
    try:
        created = connector.create_deposit(
            reference=deposit.reference,
            amount=deposit.amount,
            currency=deposit.currency,
            metadata={"client_id": str(deposit.client_id)},
        )
    except ProviderError as exc:
        with transaction.atomic():
            row = Deposit.objects.select_for_update().get(pk=deposit.pk)
            if row.status == "initiated":
                _step(
                    "deposit",
                    row,
                    "failed",
                    actor=actor,
                    reason=f"provider refused: {exc.message}",
                    table=states.DEPOSIT_TRANSITIONS,
                )
        raise
    with transaction.atomic():
        row = Deposit.objects.select_for_update().get(pk=deposit.pk)
        row.provider_id = created.provider_id
        row.pay_url = created.pay_url
        if row.status == "initiated":
            _step(
                "deposit",
                row,
                "pending",
                actor=actor,
                reason="created at the provider",
                table=states.DEPOSIT_TRANSITIONS,
                data={"provider_id": created.provider_id},
            )
        else:  # the webhook was faster than the provider's answer
            row.save(update_fields=["provider_id", "pay_url"])
        return deposit_view(row)


def _replayed_deposit(
    d: Deposit, client_id: UUID, amount: int, currency: str, provider: str, wallet: str = ""
) -> DepositView:
    if (d.client_id, d.amount, d.currency, d.provider, d.wallet_currency) != (
        client_id,
        amount,
        currency,
        provider,
        wallet,
    ):
        raise Conflict(
            "This request id was used for a different deposit.",
            code="idempotency_conflict",
            field="request_id",
        )
    IDEMPOTENT_REPLAYS.labels(kind="deposit_intent").inc()
    return deposit_view(d, replayed=True)


def _hold_reason(d: Deposit) -> str:
    earlier = Deposit.objects.filter(client_id=d.client_id, status__in=("confirmed", "held"))
    recent = earlier.filter(confirmed_at__gte=clock.now() - rules().velocity_window).count()
    return hold_reason_for(d, int(recent or earlier.exists()), recent)


def hold_reason_for(d: Deposit, earlier: int, recent: int) -> str:
    """Why ``d`` is held on confirmation ("" when available by rule), given the client's
    ``earlier`` confirmed or held deposits and the ``recent`` ones in the velocity window."""
    r = rules()
    if (
        r.first_deposit_review_above is not None
        and not earlier
        and d.amount > r.first_deposit_review_above
    ):
        return f"first deposit above {r.first_deposit_review_above} minor units: review"
    if recent >= r.velocity_max_count:
        return f"velocity: {recent} deposits within {r.velocity_window}"
    return ""


def deposit_fee(amount: int) -> int:
    """Our fee on a deposit of ``amount`` by the rules in force (never above the amount)."""
    r = rules()
    fee = -(-amount * r.deposit_fee_bps // 10_000) + r.deposit_fee_fixed if amount else 0
    return min(fee, amount)


def _confirm_deposit(d: Deposit, event: NormalizedEvent) -> str:
    if d.status in ("confirmed", "held", "reversed", "failed"):
        return f"already_{d.status}"
    if event.amount != d.amount or event.currency != d.currency:
        open_exception(
            "webhook_amount_mismatch",
            d.reference,
            f"The PSP confirmed {event.amount} {event.currency}; the intent was "
            f"{d.amount} {d.currency}. Nothing was posted.",
            event_id=event.event_id,
        )
        return "amount_mismatch"
    if converts(d):
        return _confirm_converting(d, event)
    fee = deposit_fee(d.amount)
    hold = _hold_reason(d)
    pending = ledger.wallet_account(d.client_id, d.currency, "pending").id
    meta = {"reference": d.reference, "provider": d.provider, "provider_id": event.provider_id}
    chain: list[ledger.Request] = [
        ledger.TransferRequest(
            f"deposit:{d.reference}:credit",
            "deposit",
            d.currency,
            (
                ledger.debit(clearing_account(d.provider, d.currency), d.amount),
                ledger.credit(pending, d.amount),
            ),
            metadata=meta,
            actor=f"psp:{d.provider}",
            reason="deposit confirmed by the PSP",
        )
    ]
    if fee:
        income = ledger.system_account("fee_income", d.currency).id
        chain.append(
            ledger.TransferRequest(
                f"deposit:{d.reference}:fee",
                "deposit_fee",
                d.currency,
                (ledger.debit(pending, fee), ledger.credit(income, fee)),
                metadata=meta,
                actor="system:payments",
                reason="deposit fee",
            )
        )
    if not hold and d.amount - fee > 0:
        chain.append(
            release_request(d, d.amount - fee, reason="available by rule", pending=pending)
        )
    results = ledger.post_linked(chain)
    d.credit_transfer_id = results[0].transfer_id
    d.fee = fee
    d.psp_fee = event.fee
    d.provider_id = event.provider_id or d.provider_id  # the payment's id (Stripe: the intent)
    d.hold_reason = hold
    d.confirmed_at = clock.now()
    if fee:
        d.fee_transfer_id = results[1].transfer_id
    if not hold:
        d.release_transfer_id = results[-1].transfer_id
    _step(
        "deposit",
        d,
        "held" if hold else "confirmed",
        actor=f"psp:{d.provider}",
        reason=hold or "confirmed by the PSP",
        table=states.DEPOSIT_TRANSITIONS,
        data={"event_id": event.event_id, "fee": fee, "psp_fee": event.fee},
    )
    emit(
        DepositConfirmed(
            payment_id=d.id,
            client_id=d.client_id,
            reference=d.reference,
            amount=d.amount,
            currency=d.currency,
            actor=f"psp:{d.provider}",
            available=not hold,
            provider=d.provider,
        )
    )
    return "held" if hold else "confirmed"


def confirm_deposit(d: Deposit, event: NormalizedEvent) -> str:
    """Confirm the locked deposit ``d`` on the PSP's ``deposit.succeeded`` event (its inbox
    row already claimed); return the outcome."""
    return _confirm_deposit(d, event)


def _confirm_converting(d: Deposit, event: NormalizedEvent) -> str:
    """Confirm a deposit paid in another currency than its wallet's, as one linked chain:
    PSP clearing → ``pending`` (paid currency); the explicit conversion (sell the paid amount
    to the FX account, buy the wallet currency, FX fee to ``fee_income``); our deposit fee and
    the release in the wallet currency. The rate is taken once, recorded on the deposit, and a
    recorded rate is reused; the postings' keys make a replay post nothing."""
    wallet = d.wallet_currency
    if not d.fx.get("rate"):
        d.fx = _quote(d.currency, wallet, None)
    rate, fee_bps = Decimal(d.fx["rate"]), int(d.fx["fee_bps"])
    gross, fx_fee = fx_amounts(d.amount, d.currency, wallet, rate, fee_bps)
    credited = gross - fx_fee
    fee = deposit_fee(credited)
    hold = _hold_reason(d)
    paid_pending = ledger.wallet_account(d.client_id, d.currency, "pending").id
    pending = ledger.wallet_account(d.client_id, wallet, "pending").id
    income = ledger.system_account("fee_income", wallet).id
    meta = {"reference": d.reference, "provider": d.provider, "provider_id": event.provider_id}
    fx_meta = {**meta, **d.fx}
    why = f"deposit conversion at {d.fx['rate']} ({d.fx['rate_day'] or 'fixed'})"
    key = f"deposit:{d.reference}"

    def leg(name: str, kind: str, currency: str, debit: UUID, credit: UUID, amount: int) -> Any:
        return ledger.TransferRequest(
            f"{key}:{name}",
            kind,
            currency,
            (ledger.debit(debit, amount), ledger.credit(credit, amount)),
            metadata=fx_meta if name.startswith("fx") else meta,
            actor=f"psp:{d.provider}" if name == "credit" else "system:payments",
            reason=why if name.startswith("fx") else f"deposit {name}",
        )

    legs = [
        (
            "credit",
            "deposit",
            d.currency,
            clearing_account(d.provider, d.currency),
            paid_pending,
            d.amount,
        ),
        (
            "fx_sell",
            "fx_sell",
            d.currency,
            paid_pending,
            ledger.system_account("fx", d.currency).id,
            d.amount,
        ),
        ("fx_buy", "fx_buy", wallet, ledger.system_account("fx", wallet).id, pending, gross),
    ]
    if fx_fee:
        legs.append(("fx_fee", "fx_fee", wallet, pending, income, fx_fee))
    if fee:
        legs.append(("fee", "deposit_fee", wallet, pending, income, fee))
    chain: list[ledger.Request] = [leg(*spec) for spec in legs]
    names = [spec[0] for spec in legs]
    if not hold and credited - fee > 0:
        chain.append(release_request(d, credited - fee, reason="available by rule"))
        names.append("release")
    ids = {n: r.transfer_id for n, r in zip(names, ledger.post_linked(chain), strict=True)}
    d.credit_transfer_id = ids["credit"]
    d.fee_transfer_id = ids.get("fee")
    d.release_transfer_id = ids.get("release")
    d.fee = fee
    d.psp_fee = event.fee
    d.wallet_amount = credited
    d.fx = {
        **d.fx,
        "gross": gross,
        "fee": fx_fee,
        "transfers": {n: str(ids[n]) for n in ("fx_sell", "fx_buy", "fx_fee") if n in ids},
    }
    d.provider_id = event.provider_id or d.provider_id
    d.hold_reason = hold
    d.confirmed_at = clock.now()
    _step(
        "deposit",
        d,
        "held" if hold else "confirmed",
        actor=f"psp:{d.provider}",
        reason=hold or "confirmed by the PSP",
        table=states.DEPOSIT_TRANSITIONS,
        data={
            "event_id": event.event_id,
            "fee": fee,
            "psp_fee": event.fee,
            "wallet_currency": wallet,
            "credited": credited,
            "fx_rate": d.fx["rate"],
            "fx_rate_day": d.fx["rate_day"],
            "fx_fee": fx_fee,
        },
    )
    emit(
        DepositConfirmed(
            payment_id=d.id,
            client_id=d.client_id,
            reference=d.reference,
            amount=credited,
            currency=wallet,
            actor=f"psp:{d.provider}",
            available=not hold,
            provider=d.provider,
        )
    )
    return "held" if hold else "confirmed"


def release_request(
    d: Deposit,
    amount: int,
    *,
    reason: str,
    pending: UUID | None = None,
    cash: UUID | None = None,
) -> ledger.TransferRequest:
    """The ledger request making ``amount`` of a deposit available (pending → cash, in the
    wallet currency)."""
    currency = wallet_side(d)[0]
    pending = pending or ledger.wallet_account(d.client_id, currency, "pending").id
    cash = cash or ledger.wallet_account(d.client_id, currency, "cash").id
    return ledger.TransferRequest(
        f"deposit:{d.reference}:release",
        "deposit_release",
        currency,
        (ledger.debit(pending, amount), ledger.credit(cash, amount)),
        metadata={"reference": d.reference},
        actor="system:payments",
        reason=reason,
    )


def release_deposit(deposit_id: UUID | str, *, by: Any, reason: str) -> DepositView:
    """Make a held deposit available (pending → cash); finance or compliance only."""
    if not isinstance(by, str):
        require_role(by, Role.FINANCE, Role.COMPLIANCE_OFFICER)
    if not reason.strip():
        raise ValidationError("A release needs a reason.", code="reason_required", field="reason")
    actor = actor_label(by)
    with transaction.atomic():
        d = _locked_deposit(deposit_id)
        states.check(states.DEPOSIT_TRANSITIONS, "deposit", d.status, "confirmed")
        credited = wallet_side(d)[1]
        result = ledger.post_transfer(release_request(d, credited - d.fee, reason=reason))
        d.release_transfer_id = result.transfer_id
        _step(
            "deposit", d, "confirmed", actor=actor, reason=reason, table=states.DEPOSIT_TRANSITIONS
        )
        return deposit_view(d)


def reverse_deposit(deposit_id: UUID | str, *, by: Any, reason: str) -> DepositView:
    """Reverse a confirmed or held deposit (failed settlement, chargeback) by compensation."""
    if not isinstance(by, str):
        require_role(by, Role.FINANCE)
    if not reason.strip():
        raise ValidationError("A reversal needs a reason.", code="reason_required", field="reason")
    with transaction.atomic():
        d = _locked_deposit(deposit_id)
        _reverse(d, actor=actor_label(by), reason=reason)
        return deposit_view(d)


def _reverse(d: Deposit, *, actor: str, reason: str) -> None:
    states.check(states.DEPOSIT_TRANSITIONS, "deposit", d.status, "reversed")
    fx = d.fx.get("transfers", {})
    legs = [
        ("release", d.release_transfer_id),
        ("fee", d.fee_transfer_id),
        *(
            (name, UUID(fx[name]) if name in fx else None)
            for name in ("fx_fee", "fx_buy", "fx_sell")
        ),
        ("credit", d.credit_transfer_id),
    ]
    reversals: dict[str, str] = {}
    with transaction.atomic():  # all the compensations, or none of them
        for name, transfer_id in legs:
            if transfer_id is not None:
                result = ledger.reverse(
                    transfer_id, f"deposit:{d.reference}:reverse:{name}", reason=reason, actor=actor
                )
                reversals[name] = str(result.transfer_id)
    _step(
        "deposit",
        d,
        "reversed",
        actor=actor,
        reason=reason,
        table=states.DEPOSIT_TRANSITIONS,
        data={"reversals": reversals},
    )
    wallet_currency, wallet_amount = wallet_side(d)
    emit(
        DepositReversed(
            payment_id=d.id,
            client_id=d.client_id,
            reference=d.reference,
            amount=wallet_amount,
            currency=wallet_currency,
            actor=actor,
            reason=reason,
        )
    )


def _locked_deposit(deposit_id: UUID | str) -> Deposit:
    d = Deposit.objects.select_for_update().filter(pk=deposit_id).first()
    if d is None:
        raise NotFound("No such deposit.", code="deposit_not_found", field="deposit_id")
    return d


def _failed_deposit(d: Deposit, event: NormalizedEvent) -> str:
    if d.status not in ("initiated", "pending"):
        return f"already_{d.status}"
    _step(
        "deposit",
        d,
        "failed",
        actor=f"psp:{d.provider}",
        reason="declined by the PSP",
        table=states.DEPOSIT_TRANSITIONS,
        data={"event_id": event.event_id},
    )
    return "failed"


def _chargeback(d: Deposit, event: NormalizedEvent) -> str:
    if d.status == "reversed":
        return "already_reversed"
    if d.status not in ("confirmed", "held"):
        return f"ignored_{d.status}"
    try:
        _reverse(d, actor=f"psp:{d.provider}", reason=f"chargeback {event.event_id}")
    except InsufficientFunds as exc:
        open_exception(
            "chargeback_unfunded",
            d.reference,
            f"Chargeback of {d.amount} {d.currency} could not be reversed from the wallet: "
            f"{exc.message}",
            event_id=event.event_id,
        )
        return "chargeback_unfunded"
    return "reversed"


# ----------------------------------------------------------------------------- webhooks


def receive_webhook(provider: str, body: bytes, headers: Any) -> str:
    """Verify, record once in the inbox, and process a PSP webhook; return the outcome.

    A delivery whose (provider, event id) is already in the inbox is a ``duplicate`` and
    changes nothing. The signature is checked before anything is read or written.
    Concurrent webhooks are processed in batches (``payments.webhooks``).
    """
    from brokerdesk.payments import webhooks

    return webhooks.receive_webhook(provider, body, headers)


def receive_one(event: NormalizedEvent) -> str:
    """Record ``event`` in the inbox and process it, once, on its own."""
    with transaction.atomic():
        inbox_id = inbox_insert(event)
        if inbox_id is None:
            IDEMPOTENT_REPLAYS.labels(kind="psp_webhook").inc()
            return "duplicate"
        outcome = _process(event)
        InboxEvent.objects.filter(pk=inbox_id).update(outcome=outcome)
        return outcome


def inbox_insert(event: NormalizedEvent) -> UUID | None:
    """INSERT … ON CONFLICT (provider, event_id) DO NOTHING; the new row's id or ``None``."""
    row_id = new_id()
    values = {
        "id": row_id,
        "provider": event.provider,
        "event_id": event.event_id[:200],
        "kind": event.kind,
        "reference": event.reference[:64],
        "payload": json.loads(json.dumps(event.raw, default=str)),
        "received_at": clock.now(),
        "outcome": "",
    }
    opts = InboxEvent._meta
    by_name = {f.name: f for f in opts.concrete_fields}
    columns = [by_name[name] for name in values]
    params = [f.get_db_prep_save(values[f.name], connection) for f in columns]
    sql = (
        f"INSERT INTO {opts.db_table} ({', '.join(f.column for f in columns)}) "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(columns))}) "
        "ON CONFLICT (provider, event_id) DO NOTHING RETURNING id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        inserted = cursor.fetchone()
    return row_id if inserted else None


def _process(event: NormalizedEvent) -> str:
    if event.kind.startswith("deposit."):
        # a dispute names the provider's payment, not our reference
        match = (
            {"reference": event.reference}
            if event.reference
            else {"provider_id": event.provider_id or "-"}
        )
        d = Deposit.objects.select_for_update().filter(provider=event.provider, **match).first()
        if d is None:
            open_exception(
                "unmatched_webhook",
                event.reference,
                f"{event.provider} event {event.event_id} ({event.kind}) matches no deposit.",
                event_id=event.event_id,
            )
            return "unmatched"
        if event.kind == "deposit.succeeded":
            return _confirm_deposit(d, event)
        if event.kind == "deposit.failed":
            return _failed_deposit(d, event)
        return _chargeback(d, event)
    if event.kind.startswith("payout."):
        w = (
            Withdrawal.objects.select_for_update()
            .filter(provider=event.provider, reference=event.reference)
            .first()
        )
        if w is None:
            open_exception(
                "unmatched_webhook",
                event.reference,
                f"{event.provider} event {event.event_id} ({event.kind}) matches no withdrawal.",
                event_id=event.event_id,
            )
            return "unmatched"
        return _payout_event(w, event)
    return "ignored"


_REFERENCE = re.compile(r"\b(dep|wd)_[0-9a-f]{32}\b")
STATEMENT_COLUMNS = ("transaction_id", "amount", "currency", "remittance")


def import_bank_statement(text: str, *, by: Any = "system:bank-import") -> list[tuple[str, str]]:
    """Match a bank statement (CSV) to deposits and withdrawals by the reference quoted in
    each line's remittance text; return (transaction id, outcome) per line.

    Columns: ``transaction_id, amount`` (signed minor units: credits in, debits out),
    ``currency, remittance``. Each line passes through the inbox keyed by the bank's
    transaction id, so importing a statement twice posts nothing twice. A line without a
    known reference goes to the exceptions queue.
    """
    actor_label(by)
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in STATEMENT_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValidationError(
            f"The bank statement lacks the columns {', '.join(missing)}.",
            code="bad_statement_file",
            field="file",
        )
    outcomes: list[tuple[str, str]] = []
    for number, row in enumerate(reader, start=2):
        txid = (row.get("transaction_id") or "").strip()
        try:
            signed = int(row.get("amount") or "")
        except ValueError:
            raise ValidationError(
                f"Line {number}: amount must be a whole number of minor units.",
                code="not_integer",
                field="amount",
            ) from None
        if not txid:
            raise ValidationError(
                f"Line {number}: transaction_id is required.",
                code="required",
                field="transaction_id",
            )
        found = _REFERENCE.search(row.get("remittance") or "")
        reference = found.group(0) if found else ""
        if signed > 0:
            kind: Any = "deposit.succeeded"
        else:
            kind = "payout.paid"
        event = NormalizedEvent(
            provider="bank",
            event_id=txid,
            kind=kind,
            reference=reference,
            provider_id=txid,
            amount=abs(signed),
            currency=get_currency(row.get("currency") or "").code,
            status="booked",
            raw={k: v for k, v in row.items() if k},
        )
        outcomes.append((txid, receive_one(event)))
    return outcomes


# ----------------------------------------------------------------------------- withdrawals


def request_withdrawal(
    client_id: UUID | str,
    *,
    amount: int,
    currency: str,
    method_id: UUID | str,
    request_id: str,
    by: Any,
    payout_currency: str | None = None,
    rates: RateProvider | None = None,
) -> WithdrawalView:
    """Ask to withdraw: policy (``may``), no negative trading balance, method ownership and
    return-to-source, then cash → locked. Approved at once up to the auto-approval threshold,
    else waits for a second person. Refusals raise with the policy's readable reason.

    ``amount``/``currency`` are the wallet's; to a method in ``payout_currency`` the payout
    amount is fixed now (rate from the rates port, FX fee) and recorded; the conversion is
    posted when the payout is paid, so a rejection or failure gives back the wallet amount.
    """
    amount = _check_amount(amount)
    currency = get_currency(currency).code
    payout = get_currency(payout_currency).code if payout_currency else currency
    request_id = _check_key(request_id)
    actor = actor_label(by)
    client = get_client(client_id)
    existing = Withdrawal.objects.filter(request_key=request_id).first()
    if existing is not None:
        return _replayed_withdrawal(existing, client.id, amount, currency, payout)
    decision = may(client.id, "withdraw")
    if not decision.allowed:
        raise PermissionDenied(decision.reason, code=decision.reason_code, field="client_id")
    check_trading_balance(client.id)
    method = PaymentMethod.objects.filter(pk=method_id).first() if method_id else None
    if method is None or method.client_id != client.id:
        raise PermissionDenied(
            "Withdrawals go only to a payment method the client owns.",
            code="method_not_owned",
            field="method_id",
        )
    if not Deposit.objects.filter(
        client_id=client.id, method=method, currency=payout, status__in=("confirmed", "held")
    ).exists():
        raise ValidationError(
            f"Return to source: withdraw to a method the client deposited {payout} with.",
            code="not_return_to_source",
            field="method_id",
        )
    fx: dict[str, Any] = {}
    paid_out = amount
    if payout != currency:
        fx = _quote(currency, payout, rates)
        gross, fx_fee = fx_amounts(amount, currency, payout, Decimal(fx["rate"]), fx["fee_bps"])
        fx.update(gross=gross, fee=fx_fee)
        paid_out = gross - fx_fee
    now = clock.now()
    with transaction.atomic():
        twin = Withdrawal.objects.filter(request_key=request_id).first()
        if twin is not None:
            return _replayed_withdrawal(twin, client.id, amount, currency, payout)
        w = Withdrawal.objects.create(
            request_key=request_id,
            reference=f"wd_{new_id().hex}",
            client_id=client.id,
            provider=method.provider,
            method=method,
            amount=paid_out,
            currency=payout,
            wallet_currency=currency if fx else "",
            wallet_amount=amount if fx else 0,
            fx=fx,
            status="requested",
            requested_by=actor,
            created_at=now,
            updated_at=now,
        )
        result = ledger.transfer(
            f"withdrawal:{w.reference}:lock",
            debit_account=ledger.wallet_account(client.id, currency, "cash").id,
            credit_account=ledger.wallet_account(client.id, currency, "locked").id,
            amount=amount,
            currency=currency,
            kind="withdrawal_lock",
            metadata={"reference": w.reference},
            actor=actor,
            reason="withdrawal requested",
        )
        w.lock_transfer_id = result.transfer_id
        w.save(update_fields=["lock_transfer_id"])
        _opened(
            "withdrawal",
            w,
            actor=actor,
            reason="withdrawal requested",
            data={"wallet_currency": currency, "wallet_amount": amount, "fx": fx} if fx else None,
        )
        emit(WithdrawalRequested(**_payload(w, actor)))
        review = _needs_review(w.client_id, amount)
        if review is None:
            _approve(w, actor="system:auto-approval", reason="under the auto-approval threshold")
        else:
            _step(
                "withdrawal",
                w,
                "pending_approval",
                actor="system:payments",
                reason=review,
                table=states.WITHDRAWAL_TRANSITIONS,
            )
        return withdrawal_view(w)


def _needs_review(client_id: UUID, amount: int) -> str | None:
    """Why a withdrawal needs a person (maker-checker), or None to approve it automatically:
    above the amount threshold, or a client whose risk score is above the ceiling."""
    if amount > rules().auto_approve_up_to:
        return f"above {rules().auto_approve_up_to}: needs a second person"
    score = risk_score(client_id)
    if score > rules().auto_approve_max_risk:
        return f"risk score {score} above {rules().auto_approve_max_risk}: needs a second person"
    return None


def check_trading_balance(client_id: UUID) -> None:
    """Refuse a withdrawal while one of the client's live trading accounts shows a negative
    balance or equity (the trading module's read model, ``trading.queries``)."""
    from brokerdesk.trading.queries import accounts_of

    for account in accounts_of(client_id):
        if account.is_live and (account.balance < 0 or account.equity < 0):
            raise PermissionDenied(
                _(
                    "Withdrawals are paused while trading account %(login)s has a negative "
                    "balance or equity (rule: negative trading balance)."
                )
                % {"login": account.login},
                code="negative_trading_balance",
                field="client_id",
            )


def _payload(w: Withdrawal, actor: str) -> dict[str, Any]:
    currency, amount = wallet_side(w)
    return {
        "payment_id": w.id,
        "client_id": w.client_id,
        "reference": w.reference,
        "amount": amount,
        "currency": currency,
        "actor": actor,
    }


def _replayed_withdrawal(
    w: Withdrawal, client_id: UUID, amount: int, currency: str, payout: str
) -> WithdrawalView:
    if (w.client_id, *wallet_side(w), w.currency) != (client_id, currency, amount, payout):
        raise Conflict(
            "This request id was used for a different withdrawal.",
            code="idempotency_conflict",
            field="request_id",
        )
    IDEMPOTENT_REPLAYS.labels(kind="withdrawal_request").inc()
    return withdrawal_view(w, replayed=True)


def _approve(w: Withdrawal, *, actor: str, reason: str) -> None:
    w.approved_by = actor
    _step(
        "withdrawal", w, "approved", actor=actor, reason=reason, table=states.WITHDRAWAL_TRANSITIONS
    )
    emit(WithdrawalApproved(**_payload(w, actor)))


def _locked_withdrawal(withdrawal_id: UUID | str) -> Withdrawal:
    w = Withdrawal.objects.select_for_update().filter(pk=withdrawal_id).first()
    if w is None:
        raise NotFound("No such withdrawal.", code="withdrawal_not_found", field="withdrawal_id")
    return w


def approve_withdrawal(withdrawal_id: UUID | str, *, by: Any, reason: str) -> WithdrawalView:
    """Approve a withdrawal waiting for a second person (finance; never the requester)."""
    if not isinstance(by, str):
        require_role(by, Role.FINANCE)
    if not reason.strip():
        raise ValidationError("An approval needs a reason.", code="reason_required", field="reason")
    actor = actor_label(by)
    with transaction.atomic():
        w = _locked_withdrawal(withdrawal_id)
        states.check(states.WITHDRAWAL_TRANSITIONS, "withdrawal", w.status, "approved")
        ensure_different_approver(w.requested_by, actor)
        _approve(w, actor=actor, reason=reason)
        return withdrawal_view(w)


def reject_withdrawal(withdrawal_id: UUID | str, *, by: Any, reason: str) -> WithdrawalView:
    """Reject a withdrawal before it is sent: locked → cash."""
    if not isinstance(by, str):
        require_role(by, Role.FINANCE, Role.COMPLIANCE_OFFICER)
    if not reason.strip():
        raise ValidationError("A rejection needs a reason.", code="reason_required", field="reason")
    actor = actor_label(by)
    with transaction.atomic():
        w = _locked_withdrawal(withdrawal_id)
        states.check(states.WITHDRAWAL_TRANSITIONS, "withdrawal", w.status, "rejected")
        _unlock(w, "release", actor=actor, reason=reason)
        _step(
            "withdrawal",
            w,
            "rejected",
            actor=actor,
            reason=reason,
            table=states.WITHDRAWAL_TRANSITIONS,
        )
        return withdrawal_view(w)


WITHDRAWAL_LANES = ("auto_approve", "manual_review")


def route_withdrawal(
    withdrawal_id: UUID | str, *, lane: str, by: Any, reason: str
) -> WithdrawalView:
    """Put a withdrawal not yet approved into a lane (the automations' risk routing).

    ``auto_approve``: straight through (requested or pending_approval → approved);
    ``manual_review``: requested → pending_approval (already there: unchanged). A withdrawal
    already approved or further along cannot be re-routed (``IllegalTransition``). Audited.
    """
    if lane not in WITHDRAWAL_LANES:
        raise ValidationError(
            f"Unknown lane {lane!r}; one of {', '.join(WITHDRAWAL_LANES)}.",
            code="unknown_lane",
            field="lane",
        )
    if not isinstance(by, str):
        require_role(by, Role.FINANCE)
    if not reason.strip():
        raise ValidationError("Routing needs a reason.", code="reason_required", field="reason")
    actor = actor_label(by)
    with transaction.atomic():
        w = _locked_withdrawal(withdrawal_id)
        if lane == "auto_approve":
            states.check(states.WITHDRAWAL_TRANSITIONS, "withdrawal", w.status, "approved")
            ensure_different_approver(w.requested_by, actor)
            _approve(w, actor=actor, reason=reason)
        elif w.status != "pending_approval":
            _step(
                "withdrawal",
                w,
                "pending_approval",
                actor=actor,
                reason=reason,
                table=states.WITHDRAWAL_TRANSITIONS,
            )
        return withdrawal_view(w)


def _unlock(w: Withdrawal, name: str, *, actor: str, reason: str) -> None:
    currency, amount = wallet_side(w)  # the wallet amount exactly: no FX was posted
    result = ledger.transfer(
        f"withdrawal:{w.reference}:{name}",
        debit_account=ledger.wallet_account(w.client_id, currency, "locked").id,
        credit_account=ledger.wallet_account(w.client_id, currency, "cash").id,
        amount=amount,
        currency=currency,
        kind="withdrawal_release",
        metadata={"reference": w.reference},
        actor=actor,
        reason=reason,
    )
    w.settle_transfer_id = result.transfer_id


def send_payout(withdrawal_id: UUID | str, *, by: Any = "system:payouts") -> WithdrawalView:
    """Instruct the PSP to pay an approved withdrawal out (approved → sent).

    The row stays locked during the provider call, so a payout is instructed once.
    """
    actor = actor_label(by)
    with transaction.atomic():
        w = _locked_withdrawal(withdrawal_id)
        states.check(states.WITHDRAWAL_TRANSITIONS, "withdrawal", w.status, "sent")
        connector = connectors.get(w.provider)
        created = connector.create_payout(
            reference=w.reference,
            amount=w.amount,
            currency=w.currency,
            destination=_payout_destination(
                w, refund=getattr(connector, "pays_out_by_refund", False)
            ),
        )
        w.provider_id = created.provider_id
        _step(
            "withdrawal",
            w,
            "sent",
            actor=actor,
            reason="payout instructed",
            table=states.WITHDRAWAL_TRANSITIONS,
            data={"provider_id": created.provider_id},
        )
        return withdrawal_view(w)


def _payout_destination(w: Withdrawal, *, refund: bool) -> str:
    """The method's token, or (refund-based providers) the deposit payment to refund."""
    if not refund:
        return w.method.token
    source = (
        Deposit.objects.filter(
            method=w.method, currency=w.currency, status="confirmed", amount__gte=w.amount
        )
        .order_by("-confirmed_at")
        .values_list("provider_id", flat=True)
        .first()
    )
    if not source:
        raise ValidationError(
            f"{w.provider} pays out by refund: no confirmed deposit of at least {w.amount} "
            f"{w.currency} through this method to refund.",
            code="no_refundable_deposit",
            field="method_id",
        )
    return source


def _converted_payout(
    w: Withdrawal, target: str, event: NormalizedEvent, clearing: UUID, actor: str
) -> None:
    """Paid: one linked chain — the wallet amount from ``locked`` sold to the FX account, the
    payout amount bought into the PSP clearing account (key ``withdrawal:<ref>:paid``, as
    the settlement file is reconciled) and the FX fee to ``fee_income``, at the rate fixed at
    request time. Returned after payment: those postings reversed (compensating, linked; the
    clearing leg as ``withdrawal:<ref>:return``) and ``locked`` → ``cash``: the client gets the
    wallet amount back exactly and the house carries any FX move since."""
    key = f"withdrawal:{w.reference}"
    wallet, amount = wallet_side(w)
    locked = ledger.wallet_account(w.client_id, wallet, "locked").id
    if target == "returned":
        names = {"paid": "return", "fx_fee": "return:fx_fee", "fx_sell": "return:fx_sell"}
        done = w.fx.get("transfers", {})
        for name, suffix in names.items():
            transfer_id = w.settle_transfer_id if name == "paid" else done.get(name)
            if transfer_id:
                result = ledger.reverse(
                    UUID(str(transfer_id)), f"{key}:{suffix}", reason="payout returned", actor=actor
                )
                if name == "paid":
                    w.return_transfer_id = result.transfer_id
        ledger.transfer(
            f"{key}:return:unlock",
            debit_account=locked,
            credit_account=ledger.wallet_account(w.client_id, wallet, "cash").id,
            amount=amount,
            currency=wallet,
            kind="withdrawal_return",
            metadata={"reference": w.reference},
            actor=actor,
            reason="payout returned",
        )
        return
    fx_fee = int(w.fx.get("fee", 0))
    fx_out = ledger.system_account("fx", w.currency).id
    meta = {"reference": w.reference, "provider_id": event.provider_id, **w.fx}
    why = f"payout conversion at {w.fx['rate']} ({w.fx['rate_day'] or 'fixed'})"
    specs = [
        ("fx_sell", "fx_sell", wallet, locked, ledger.system_account("fx", wallet).id, amount),
        ("paid", "withdrawal", w.currency, fx_out, clearing, w.amount),
    ]
    if fx_fee:
        income = ledger.system_account("fee_income", w.currency).id
        specs.append(("fx_fee", "fx_fee", w.currency, fx_out, income, fx_fee))
    results = ledger.post_linked(
        [
            ledger.TransferRequest(
                f"{key}:{name}",
                kind,
                currency,
                (ledger.debit(debit, value), ledger.credit(credit, value)),
                metadata=meta,
                actor=actor,
                reason=why if name != "paid" else "paid out by the PSP",
            )
            for name, kind, currency, debit, credit, value in specs
        ]
    )
    ids = {spec[0]: r.transfer_id for spec, r in zip(specs, results, strict=True)}
    w.settle_transfer_id = ids["paid"]
    w.psp_fee = event.fee
    w.provider_id = w.provider_id or event.provider_id
    w.fx = {**w.fx, "transfers": {n: str(ids[n]) for n in ("fx_sell", "fx_fee") if n in ids}}


def _payout_event(w: Withdrawal, event: NormalizedEvent) -> str:
    actor = f"psp:{w.provider}"
    target = {"payout.paid": "paid", "payout.failed": "failed", "payout.returned": "returned"}[
        event.kind
    ]
    if w.status == target:
        return f"already_{target}"
    if target not in states.WITHDRAWAL_TRANSITIONS[w.status]:
        return f"ignored_{w.status}"
    if (event.amount, event.currency) != (w.amount, w.currency):
        open_exception(
            "webhook_amount_mismatch",
            w.reference,
            f"The PSP reported {event.amount} {event.currency} for a payout of "
            f"{w.amount} {w.currency}. Nothing was posted.",
            event_id=event.event_id,
        )
        return "amount_mismatch"
    clearing = clearing_account(w.provider, w.currency)
    if converts(w) and target in ("paid", "returned"):
        _converted_payout(w, target, event, clearing, actor)
    elif target == "paid":
        result = ledger.transfer(
            f"withdrawal:{w.reference}:paid",
            debit_account=ledger.wallet_account(w.client_id, w.currency, "locked").id,
            credit_account=clearing,
            amount=w.amount,
            currency=w.currency,
            kind="withdrawal",
            metadata={"reference": w.reference, "provider_id": event.provider_id},
            actor=actor,
            reason="paid out by the PSP",
        )
        w.settle_transfer_id = result.transfer_id
        w.psp_fee = event.fee
        w.provider_id = w.provider_id or event.provider_id
    elif target == "failed":
        _unlock(w, "release", actor=actor, reason="payout failed at the PSP")
    else:
        result = ledger.transfer(
            f"withdrawal:{w.reference}:return",
            debit_account=clearing,
            credit_account=ledger.wallet_account(w.client_id, w.currency, "cash").id,
            amount=w.amount,
            currency=w.currency,
            kind="withdrawal_return",
            metadata={"reference": w.reference},
            actor=actor,
            reason="payout returned",
        )
        w.return_transfer_id = result.transfer_id
    _step(
        "withdrawal",
        w,
        target,
        actor=actor,
        reason=f"{event.kind} {event.event_id}",
        table=states.WITHDRAWAL_TRANSITIONS,
        data={"event_id": event.event_id},
    )
    if target == "paid":
        emit(WithdrawalPaid(**_payload(w, actor), provider_id=w.provider_id))
    elif target == "returned":
        emit(WithdrawalReturned(**_payload(w, actor)))
    return target


# ----------------------------------------------------------------------------- FX


@dataclass(frozen=True)
class ConversionView:
    """A wallet conversion: what was sold, bought and charged, at which rate."""

    id: UUID
    from_currency: str
    to_currency: str
    sell_amount: int
    rate: Decimal
    rate_day: date | None
    fee_bps: int
    bought: int
    fee: int
    replayed: bool = False


def convert_wallet(
    client_id: UUID | str,
    *,
    from_currency: str,
    to_currency: str,
    sell_amount: int,
    request_id: str,
    by: Any,
    rates: RateProvider | None = None,
) -> ConversionView:
    """Convert cash between two of the client's wallet currencies through the ledger's FX
    accounts, with the rate (from the rates port; ECB by default) and the fee explicit.

    The rate is fixed at the first request: the same ``request_id`` replays it exactly.
    """
    sell_amount = _check_amount(sell_amount, "sell_amount")
    source, target = get_currency(from_currency).code, get_currency(to_currency).code
    request_id = _check_key(request_id)
    actor = actor_label(by)
    client = get_client(client_id)
    with transaction.atomic():
        row = WalletConversion.objects.filter(request_key=request_id).first()
        replayed = row is not None
        if row is None:
            quote = (rates or EcbRates()).rate(source, target)
            row = WalletConversion.objects.create(
                request_key=request_id,
                client_id=client.id,
                from_currency=source,
                to_currency=target,
                sell_amount=sell_amount,
                rate=quote.rate,
                rate_day=quote.day,
                fee_bps=rules().fx_fee_bps,
                actor=actor,
                created_at=clock.now(),
            )
        elif (row.client_id, row.from_currency, row.to_currency, row.sell_amount) != (
            client.id,
            source,
            target,
            sell_amount,
        ):
            raise Conflict(
                "This request id was used for a different conversion.",
                code="idempotency_conflict",
                field="request_id",
            )
        result = ledger.convert(
            f"fx:{row.id}",
            from_account=ledger.wallet_account(client.id, source, "cash"),
            to_account=ledger.wallet_account(client.id, target, "cash"),
            sell_amount=sell_amount,
            rate=row.rate,
            fee_bps=row.fee_bps,
            actor=actor,
            reason=f"wallet conversion at {row.rate} ({row.rate_day or 'fixed'})",
        )
        if not replayed:
            row.bought, row.fee = result.net_buy_amount, result.fee_amount
            row.save(update_fields=["bought", "fee"])
            audit.record(
                actor=actor,
                action="payments.wallet_conversion",
                object_type="client",
                object_id=str(client.id),
                reason=f"{sell_amount} {source} → {target}",
                after={"rate": str(row.rate), "bought": row.bought, "fee": row.fee},
            )
        return ConversionView(
            row.id,
            source,
            target,
            sell_amount,
            row.rate,
            row.rate_day,
            row.fee_bps,
            row.bought,
            row.fee,
            replayed,
        )


# ----------------------------------------------------------------------------- exceptions


def review_exception(exception_id: UUID | str, *, by: Any) -> None:
    """Take an exception into review (new → in_review)."""
    _move_exception(exception_id, "in_review", by=by, note="")


def resolve_exception(exception_id: UUID | str, *, by: Any, note: str) -> None:
    """Resolve an exception; the resolution note is mandatory."""
    if not note or not note.strip():
        raise ValidationError(
            "Resolving an exception needs a resolution note.", code="note_required", field="note"
        )
    _move_exception(exception_id, "resolved", by=by, note=note.strip())


def _move_exception(exception_id: UUID | str, target: str, *, by: Any, note: str) -> None:
    if not isinstance(by, str):
        require_role(by, Role.FINANCE)
    actor = actor_label(by)
    with transaction.atomic():
        row = ReconciliationException.objects.select_for_update().filter(pk=exception_id).first()
        if row is None:
            raise NotFound("No such exception.", code="exception_not_found", field="exception_id")
        before = row.status
        states.check(states.EXCEPTION_TRANSITIONS, "reconciliation exception", before, target)
        row.status = target
        row.updated_at = clock.now()
        if target == "in_review":
            row.assigned_to = actor
        else:
            row.resolution_note = note
            row.resolved_by = actor
        row.save()
        audit.record(
            actor=actor,
            action=f"payments.exception.{target}",
            object_type="reconciliation_exception",
            object_id=str(row.id),
            reason=note,
            before={"status": before},
            after={"status": target},
        )
