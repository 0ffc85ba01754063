"""bonuses commands: the only code that writes the bonuses tables.

Money: a credit bonus (tradable or not) is a ledger transfer ``bonus_expense`` (system) →
the client's ``bonus`` bucket; an unlock moves bonus → cash; a forfeit moves bonus →
``bonus_expense``; cashback and rebates are paid ``bonus_expense`` → cash per deal. Withdrawals
only ever take from cash, so bonus money is never paid out before it is unlocked.

Every command is idempotent (a grant key, a per-bonus event key and the ledger's idempotency
key built from them), atomic (one transaction: rows, ledger transfers, outbox events, audit)
and audited. A bonus row is locked (``SELECT … FOR UPDATE``; SQLite serialises writers)
before its figures are read, so two deals, or a deal and a withdrawal, at the same moment
never release or remove more than what is left.

Tradable credit is mirrored on the trading platform: each grant, unlock and forfeit queues a
``PlatformCreditOp`` in the same transaction; ``sync_platform_credit`` sends them (credit in /
credit out, our id in the comment) and finds a lost confirmation by its comment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.utils.translation import gettext as _

from brokerdesk.bonuses import eligibility
from brokerdesk.bonuses.eligibility import CREDIT_KINDS, PER_DEAL_KINDS, Facts, Refusal
from brokerdesk.bonuses.events import BonusForfeited, BonusGranted, BonusUnlocked
from brokerdesk.bonuses.models import (
    Bonus,
    BonusEvent,
    BonusStatus,
    Campaign,
    CampaignStatus,
    CreditOpState,
    DealBonusCost,
    DealCorrection,
    GrantDecision,
    Kind,
    KnownAccount,
    PlatformCreditOp,
    PromoRedemption,
    Trigger,
)
from brokerdesk.core import audit, clock
from brokerdesk.core.errors import Conflict, IllegalTransition, NotFound, ValidationError
from brokerdesk.core.events import emit
from brokerdesk.core.money import Money, get_currency
from brokerdesk.ledger import services as ledger
from brokerdesk.staff.roles import Role, actor_label, require_role

LOT = 10_000  # volume units per lot (MT5)
BONUS_TRANSITIONS: dict[str, tuple[str, ...]] = {
    BonusStatus.ACTIVE: (BonusStatus.COMPLETED, BonusStatus.FORFEITED, BonusStatus.EXPIRED),
    BonusStatus.COMPLETED: (),
    BonusStatus.FORFEITED: (),
    BonusStatus.EXPIRED: (),
}
CAMPAIGN_TRANSITIONS: dict[str, tuple[str, ...]] = {
    CampaignStatus.ACTIVE: (CampaignStatus.PAUSED, CampaignStatus.ENDED),
    CampaignStatus.PAUSED: (CampaignStatus.ACTIVE, CampaignStatus.ENDED),
    CampaignStatus.ENDED: (),
}
TERMS = (
    "name",
    "kind",
    "trigger",
    "currency",
    "kyc_states",
    "jurisdictions",
    "account_groups",
    "deposit_methods",
    "deposit_sequence",
    "promo_code",
    "min_deposit",
    "percent_bps",
    "fixed_amount",
    "max_per_grant",
    "cap_per_client",
    "budget",
    "unlock_per_lot",
    "lots_required",
    "window_days",
    "min_equity",
    "rebate_per_lot",
    "cashback_bps",
    "expiry_days",
    "withdrawal_forfeit",
    "starts_at",
    "ends_at",
)
_INT_TERMS = (
    "min_deposit",
    "percent_bps",
    "fixed_amount",
    "max_per_grant",
    "cap_per_client",
    "budget",
    "unlock_per_lot",
    "lots_required",
    "window_days",
    "min_equity",
    "rebate_per_lot",
    "cashback_bps",
    "expiry_days",
)


# ---------------------------------------------------------------------------- helpers


def _staff(by: Any, *roles: Role) -> str:
    """The audit label of ``by``; a person must hold one of ``roles`` (system actors pass)."""
    if not isinstance(by, str):
        require_role(by, *roles)
    return actor_label(by)


def _need_reason(reason: str) -> str:
    if not (reason or "").strip():
        raise ValidationError(
            _("Give a reason: it is shown in the bonus history."),
            code="reason_required",
            field="reason",
        )
    return reason.strip()


def _positive_amount(amount: Any, name: str = "amount") -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValidationError(
            _("Amounts are whole numbers of minor units."), code="not_integer", field=name
        )
    if amount <= 0:
        raise ValidationError(_("The amount must be positive."), code="not_positive", field=name)
    return amount


def _check_transition(table: dict[str, tuple[str, ...]], what: str, src: str, dst: str) -> None:
    if dst not in table.get(src, ()):
        raise IllegalTransition(
            _("A %(what)s that is %(src)s cannot become %(dst)s.")
            % {"what": what, "src": src, "dst": dst},
            field="status",
            current=src,
        )


def _figures(bonus: Bonus) -> dict[str, Any]:
    return {
        "granted": bonus.amount,
        "unlocked": bonus.unlocked,
        "forfeited": bonus.forfeited,
        "remaining": bonus.remaining,
        "lots_done": bonus.volume_done / LOT,
    }


def _locked_bonus(bonus_id: UUID | str) -> Bonus:
    bonus = Bonus.objects.select_for_update().select_related("campaign").filter(pk=bonus_id).first()
    if bonus is None:
        raise NotFound(_("No such bonus."), code="bonus_not_found", field="bonus_id")
    return bonus


def _event_done(bonus: Bonus, key: str) -> bool:
    return BonusEvent.objects.filter(bonus=bonus, key=key).exists()


def _record_event(
    bonus: Bonus,
    key: str,
    kind: str,
    amount: int,
    reason_code: str,
    reason: str,
    actor: str,
    figures: dict[str, Any] | None = None,
) -> BonusEvent:
    return BonusEvent.objects.create(
        bonus=bonus,
        key=key,
        kind=kind,
        amount=amount,
        reason_code=reason_code,
        reason=reason,
        figures={**_figures(bonus), **(figures or {})},
        actor=actor,
        at=clock.now(),
    )


def _event_payload(bonus: Bonus, amount: int, reason: str, figures: dict[str, Any]) -> Any:
    return {
        "bonus_id": bonus.id,
        "client_id": bonus.client_id,
        "currency": bonus.currency,
        "amount": amount,
        "reason": reason,
        "kind": bonus.kind,
        "campaign": bonus.campaign.name,
        "figures": {**_figures(bonus), **figures},
    }


# ---------------------------------------------------------------------------- campaigns


def _validate_terms(values: dict[str, Any]) -> dict[str, Any]:
    unknown = set(values) - set(TERMS)
    if unknown:
        raise ValidationError(
            _("Unknown campaign term %(name)s.") % {"name": sorted(unknown)[0]},
            code="unknown_term",
            field="terms",
        )
    if not str(values.get("name", "")).strip():
        raise ValidationError(_("A campaign needs a name."), code="required", field="name")
    if values.get("kind") not in Kind.values:
        raise ValidationError(
            _("The type must be one of %(values)s.") % {"values": ", ".join(Kind.values)},
            code="invalid_choice",
            field="kind",
        )
    if values.get("trigger") not in Trigger.values:
        raise ValidationError(
            _("The trigger must be one of %(values)s.") % {"values": ", ".join(Trigger.values)},
            code="invalid_choice",
            field="trigger",
        )
    values["currency"] = get_currency(str(values.get("currency", ""))).code
    for name in _INT_TERMS:
        value = values.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValidationError(
                _("%(name)s must be a whole number of at least 0.") % {"name": name},
                code="not_integer",
                field=name,
            )
    if values.get("percent_bps", 0) > 100_000:
        raise ValidationError(
            _("percent_bps may be at most 100000 (1000 percent)."),
            code="too_large",
            field="percent_bps",
        )
    for name in ("kyc_states", "jurisdictions", "account_groups", "deposit_methods"):
        value = values.get(name, [])
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ValidationError(
                _("%(name)s must be a list of words.") % {"name": name}, field=name
            )
        values[name] = [v.strip() for v in value if v.strip()]
    if values.get("deposit_sequence", "any") not in ("any", "first", "recurring"):
        raise ValidationError(
            _("deposit_sequence must be any, first or recurring."), field="deposit_sequence"
        )
    if values.get("withdrawal_forfeit", "full") not in ("full", "proportional"):
        raise ValidationError(
            _("withdrawal_forfeit must be full or proportional."), field="withdrawal_forfeit"
        )
    values["promo_code"] = str(values.get("promo_code", "")).strip().upper()
    kind, trigger = values["kind"], values["trigger"]
    if trigger == Trigger.PROMO and not values["promo_code"]:
        raise ValidationError(
            _("A promo campaign needs its promo code."), code="required", field="promo_code"
        )
    if kind in PER_DEAL_KINDS:
        if not values.get("max_per_grant"):
            raise ValidationError(
                _("Cashback and rebates need a maximum payout per client (max_per_grant)."),
                code="required",
                field="max_per_grant",
            )
        rate = values.get("rebate_per_lot") if kind == Kind.REBATE else values.get("cashback_bps")
        if not rate:
            field = "rebate_per_lot" if kind == Kind.REBATE else "cashback_bps"
            raise ValidationError(_("Set the payout rate."), code="required", field=field)
    elif not (values.get("percent_bps") or values.get("fixed_amount")):
        raise ValidationError(
            _("A credit bonus needs a percent of the deposit or a fixed amount."),
            code="required",
            field="percent_bps",
        )
    starts, ends = values.get("starts_at"), values.get("ends_at")
    if starts and ends and ends <= starts:
        raise ValidationError(_("The end must be after the start."), field="ends_at")
    return values


def create_campaign(*, code: str, by: Any, **terms: Any) -> Campaign:
    """Create version 1 of a campaign (finance or admin). Idempotent on ``code``: the same
    terms return the existing campaign, other terms are ``campaign_exists``."""
    actor = _staff(by, Role.FINANCE)
    code = (code or "").strip().lower()
    if not code or not code.replace("-", "").replace("_", "").isalnum():
        raise ValidationError(
            _("The code uses letters, digits, hyphens and underscores."), field="code"
        )
    values = _validate_terms(dict(terms))
    with transaction.atomic():
        existing = Campaign.objects.filter(code=code).order_by("-version").first()
        if existing is not None:
            if all(getattr(existing, k) == v for k, v in values.items()):
                return existing
            raise Conflict(
                _("A campaign with the code %(code)s exists; revise it instead.") % {"code": code},
                code="campaign_exists",
                field="code",
            )
        now = clock.now()
        campaign = Campaign.objects.create(
            code=code, version=1, created_by=actor, created_at=now, updated_at=now, **values
        )
        audit.record(
            actor=actor,
            action="bonuses.campaign_created",
            object_type="bonus_campaign",
            object_id=str(campaign.id),
            after={"code": code, "version": 1, **values},
        )
        return campaign


def revise_campaign(campaign_id: UUID | str, *, by: Any, reason: str, **changes: Any) -> Campaign:
    """Terms are never edited once a campaign exists: a revision is a new version (the old
    one ends), so every grant keeps pointing at the terms it was made under."""
    actor = _staff(by, Role.FINANCE)
    reason = _need_reason(reason)
    with transaction.atomic():
        old = Campaign.objects.select_for_update().filter(pk=campaign_id).first()
        if old is None:
            raise NotFound(_("No such campaign."), code="campaign_not_found", field="campaign_id")
        latest = Campaign.objects.filter(code=old.code).order_by("-version").first()
        if latest is None or latest.pk != old.pk or old.status == CampaignStatus.ENDED:
            raise Conflict(
                _("Only the current version of a running campaign can be revised."),
                code="not_current_version",
                field="campaign_id",
            )
        values = _validate_terms({**{k: getattr(old, k) for k in TERMS}, **changes})
        now = clock.now()
        new = Campaign.objects.create(
            code=old.code,
            version=old.version + 1,
            status=old.status,
            created_by=actor,
            created_at=now,
            updated_at=now,
            **values,
        )
        old.status, old.updated_at = CampaignStatus.ENDED, now
        old.save(update_fields=["status", "updated_at"])
        audit.record(
            actor=actor,
            action="bonuses.campaign_revised",
            object_type="bonus_campaign",
            object_id=str(new.id),
            reason=reason,
            before={"version": old.version, "id": str(old.id)},
            after={"version": new.version, **{k: values[k] for k in changes if k in values}},
        )
        return new


def set_campaign_status(campaign_id: UUID | str, status: str, *, by: Any, reason: str) -> Campaign:
    """Pause, resume or end a campaign (finance or admin), with a reason. Audited."""
    actor = _staff(by, Role.FINANCE)
    reason = _need_reason(reason)
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().filter(pk=campaign_id).first()
        if campaign is None:
            raise NotFound(_("No such campaign."), code="campaign_not_found", field="campaign_id")
        if campaign.status == status:
            return campaign
        _check_transition(CAMPAIGN_TRANSITIONS, "campaign", campaign.status, status)
        before = campaign.status
        campaign.status, campaign.updated_at = status, clock.now()
        campaign.save(update_fields=["status", "updated_at"])
        audit.record(
            actor=actor,
            action="bonuses.campaign_status",
            object_type="bonus_campaign",
            object_id=str(campaign.id),
            reason=reason,
            before={"status": before},
            after={"status": status},
        )
        return campaign


# ---------------------------------------------------------------------------- grants


def client_facts(
    client_id: UUID | str,
    *,
    deposit_amount: int | None = None,
    deposit_currency: str = "",
    deposit_method: str = "",
    first_deposit: bool | None = None,
) -> Facts:
    """Gather what the eligibility rules look at (KYC, jurisdiction, policy, groups, codes)."""
    from brokerdesk.clients.queries import get_client
    from brokerdesk.compliance.queries import kyc_status, may

    client = get_client(client_id)
    decision = may(client.id, "receive_bonus")
    groups = {a.group for a in KnownAccount.objects.filter(client_id=client.id)}
    groups |= set(_trading_groups(client.id))
    codes = frozenset(
        PromoRedemption.objects.filter(client_id=client.id).values_list("code", flat=True)
    )
    return Facts(
        kyc_state=kyc_status(client.id).state,
        jurisdiction=client.jurisdiction,
        policy_allowed=decision.allowed,
        policy_reason=decision.reason,
        account_groups=tuple(sorted(groups)),
        redeemed_codes=codes,
        deposit_amount=deposit_amount,
        deposit_currency=deposit_currency,
        deposit_method=deposit_method,
        first_deposit=first_deposit,
        at=clock.now(),
    )


def _trading_groups(client_id: UUID) -> list[str]:
    try:
        from brokerdesk.trading.queries import accounts_of
    except ImportError:  # pragma: no cover - older trading module without a read side
        return []
    return [a.group for a in accounts_of(client_id)]


def _platform_target(client_id: UUID, currency: str) -> tuple[str, int | None]:
    """The live trading account a tradable credit goes to (the oldest in the currency)."""
    try:
        from brokerdesk.trading.queries import accounts_of

        for account in accounts_of(client_id):
            if account.is_live and account.currency == currency:
                return account.server, account.login
    except ImportError:  # pragma: no cover
        pass
    known = (
        KnownAccount.objects.filter(client_id=client_id, currency=currency, is_live=True)
        .order_by("opened_at", "login")
        .first()
    )
    return (known.server, known.login) if known else ("", None)


def _client_total(campaign: Campaign, client_id: UUID) -> int:
    total = Bonus.objects.filter(campaign__code=campaign.code, client_id=client_id).aggregate(
        s=Sum("amount")
    )["s"]
    return int(total or 0)


@dataclass(frozen=True)
class GrantOutcome:
    """What one grant attempt came to: the bonus, or the rule that refused it."""

    campaign_id: UUID
    bonus_id: UUID | None
    amount: int
    refusal: Refusal | None
    replayed: bool = False


def _grant(
    campaign: Campaign,
    client_id: UUID,
    *,
    key: str,
    source: str,
    actor: str,
    reason: str,
    requested: int | None = None,
    deposit_id: str = "",
    deposit_amount: int | None = None,
) -> GrantOutcome:
    """Grant under a locked campaign: limits, the bonus row, the ledger, events, audit."""
    existing = Bonus.objects.filter(grant_key=key).first()
    if existing is not None:
        return GrantOutcome(campaign.id, existing.id, existing.amount, None, replayed=True)
    if requested is not None:
        amount, refusal = _limit(campaign, client_id, requested)
    else:
        amount, refusal = eligibility.grant_amount(
            campaign,
            deposit_amount,
            client_total=_client_total(campaign, client_id),
            campaign_total=campaign.granted_total,
        )
    if refusal is not None:
        return GrantOutcome(campaign.id, None, 0, refusal)
    now = clock.now()
    server, login = ("", None)
    if campaign.kind == Kind.TRADABLE_CREDIT:
        server, login = _platform_target(client_id, campaign.currency)
    bonus = Bonus.objects.create(
        campaign=campaign,
        client_id=client_id,
        kind=campaign.kind,
        currency=campaign.currency,
        amount=amount,
        grant_key=key,
        source=source,
        deposit_id=deposit_id,
        deposit_amount=deposit_amount or 0,
        server=server,
        login=login,
        reason=reason,
        granted_by=actor,
        granted_at=now,
        unlock_until=now + timedelta(days=campaign.window_days) if campaign.window_days else None,
        expires_at=now + timedelta(days=campaign.expiry_days) if campaign.expiry_days else None,
    )
    Campaign.objects.filter(pk=campaign.pk).update(granted_total=F("granted_total") + amount)
    campaign.granted_total += amount
    if campaign.kind in CREDIT_KINDS:
        ledger.transfer(
            f"bonus:{bonus.id}:grant",
            debit_account=ledger.system_account("bonus_expense", bonus.currency).id,
            credit_account=ledger.wallet_account(client_id, bonus.currency, "bonus").id,
            amount=amount,
            currency=bonus.currency,
            kind="bonus_grant",
            metadata={"bonus_id": str(bonus.id), "campaign": campaign.code},
            actor=actor,
            reason=reason,
        )
    figures = {"deposit": deposit_amount, "percent_bps": campaign.percent_bps}
    _record_event(bonus, "granted", "granted", amount, source, reason, actor, figures)
    if login is not None:
        _queue_credit(bonus, "in", amount, op_id=bonus.id)
    emit(BonusGranted(**_event_payload(bonus, amount, reason, figures)))
    audit.record(
        actor=actor,
        action="bonuses.granted",
        object_type="bonus",
        object_id=str(bonus.id),
        reason=reason,
        after={"client_id": str(client_id), "amount": amount, "campaign": campaign.code},
    )
    return GrantOutcome(campaign.id, bonus.id, amount, None)


def _limit(campaign: Campaign, client_id: UUID, requested: int) -> tuple[int, Refusal | None]:
    """A staff amount under the campaign's per-client cap and budget (never silently cut)."""
    if campaign.cap_per_client and _client_total(campaign, client_id) + requested > (
        campaign.cap_per_client
    ):
        return 0, Refusal("client_cap", _("This would exceed the offer's maximum per client."))
    if campaign.budget and campaign.granted_total + requested > campaign.budget:
        return 0, Refusal("budget", _("This would exceed the offer's budget."))
    return requested, None


def _locked_campaigns(ids: Iterable[UUID]) -> list[Campaign]:
    return list(Campaign.objects.select_for_update().filter(pk__in=list(ids)).order_by("pk"))


def _decide(campaign: Campaign, client_id: UUID, reference: str, outcome: GrantOutcome) -> None:
    refusal = outcome.refusal
    GrantDecision.objects.get_or_create(
        campaign=campaign,
        reference=reference,
        defaults={
            "client_id": client_id,
            "granted": refusal is None,
            "rule": refusal.rule if refusal else "",
            "message": refusal.message if refusal else "",
            "at": clock.now(),
        },
    )


def _first_deposit(client_id: UUID, payment_id: str) -> bool:
    """True when no deposit of the client that went through was made before this one
    (payments lists deposits newest first), so a late redelivery still sees it as first."""
    from brokerdesk.payments.queries import deposits_of

    ordered = list(reversed(deposits_of(client_id, limit=1000)))
    for d in ordered:
        if str(d.id) == payment_id:
            return True
        if d.status in ("confirmed", "held", "reversed"):
            return False
    return not any(d.status in ("confirmed", "held", "reversed") for d in ordered)


def grant_for_deposit(
    *, client_id: UUID | str, payment_id: str, amount: int, currency: str, method: str
) -> list[GrantOutcome]:
    """Grant every running deposit campaign the deposit qualifies for (from
    ``deposit.confirmed``). Idempotent per (campaign, deposit); refusals are recorded with
    their rule so support can say why no bonus came."""
    client_uuid = UUID(str(client_id))
    first = _first_deposit(client_uuid, str(payment_id))
    facts = client_facts(
        client_uuid,
        deposit_amount=amount,
        deposit_currency=currency,
        deposit_method=method,
        first_deposit=first,
    )
    outcomes: list[GrantOutcome] = []
    with transaction.atomic():
        candidates = Campaign.objects.filter(
            trigger=Trigger.DEPOSIT, status=CampaignStatus.ACTIVE, currency=currency
        ).values_list("pk", flat=True)
        for campaign in _locked_campaigns(candidates):
            reference = f"deposit:{payment_id}"
            refusal = eligibility.check(campaign, facts)
            if refusal is not None:
                outcome = GrantOutcome(campaign.id, None, 0, refusal)
            else:
                outcome = _grant(
                    campaign,
                    client_uuid,
                    key=f"campaign:{campaign.id}:{reference}",
                    source="deposit",
                    actor="system:bonuses",
                    reason=_("Deposit bonus: %(name)s") % {"name": campaign.name},
                    deposit_id=str(payment_id),
                    deposit_amount=amount,
                )
            _decide(campaign, client_uuid, reference, outcome)
            outcomes.append(outcome)
    return outcomes


def redeem_promo(client_id: UUID | str, code: str, *, by: Any) -> GrantOutcome:
    """A client enters a promo code: it is recorded (it qualifies later deposits), and a
    promo-triggered campaign grants at once. Unknown or closed codes are refused clearly."""
    actor = actor_label(by)
    code = (code or "").strip().upper()
    if not code:
        raise ValidationError(_("Enter a promo code."), code="required", field="code")
    client_uuid = UUID(str(client_id))
    with transaction.atomic():
        campaign = (
            Campaign.objects.select_for_update()
            .filter(promo_code=code, status=CampaignStatus.ACTIVE)
            .order_by("-version")
            .first()
        )
        if campaign is None:
            raise ValidationError(
                _("This promo code is not valid."), code="unknown_promo_code", field="code"
            )
        _redemption, created = PromoRedemption.objects.get_or_create(
            campaign=campaign, client_id=client_uuid, defaults={"code": code, "at": clock.now()}
        )
        if campaign.trigger != Trigger.PROMO:
            return GrantOutcome(campaign.id, None, 0, None, replayed=not created)
        facts = client_facts(client_uuid)
        refusal = eligibility.check(campaign, facts)
        if refusal is not None:
            outcome = GrantOutcome(campaign.id, None, 0, refusal)
        else:
            outcome = _grant(
                campaign,
                client_uuid,
                key=f"campaign:{campaign.id}:promo:{client_uuid}",
                source="promo",
                actor=actor,
                reason=_("Promo code %(code)s") % {"code": code},
            )
        _decide(campaign, client_uuid, f"promo:{client_uuid}", outcome)
        return outcome


def grant_manual(
    *,
    campaign_id: UUID | str,
    client_id: UUID | str,
    amount: int,
    reason: str,
    by: Any,
    request_key: str,
) -> GrantOutcome:
    """Staff grant (finance or admin) with a reason, under the campaign's cap and budget.
    Eligibility is checked too (a person cannot grant what compliance forbids)."""
    actor = _staff(by, Role.FINANCE)
    reason = _need_reason(reason)
    amount = _positive_amount(amount)
    if not (request_key or "").strip():
        raise ValidationError(_("A request key is required."), field="request_key")
    client_uuid = UUID(str(client_id))
    facts = client_facts(client_uuid)
    with transaction.atomic():
        locked = _locked_campaigns([UUID(str(campaign_id))])
        if not locked:
            raise NotFound(_("No such campaign."), code="campaign_not_found", field="campaign_id")
        campaign = locked[0]
        key = f"manual:{request_key.strip()}"
        existing = Bonus.objects.filter(grant_key=key).first()
        if existing is not None:
            if existing.client_id != client_uuid or existing.amount != amount:
                raise Conflict(
                    _("This request key was used for another grant."),
                    code="idempotency_conflict",
                    field="request_key",
                )
            return GrantOutcome(campaign.id, existing.id, existing.amount, None, replayed=True)
        refusal = eligibility.check(campaign, _without_campaign_rules(facts, campaign))
        if refusal is not None:
            raise ValidationError(refusal.message, code=refusal.rule, field="client_id")
        outcome = _grant(
            campaign,
            client_uuid,
            key=key,
            source="manual",
            actor=actor,
            reason=reason,
            requested=amount,
        )
        if outcome.refusal is not None:
            raise ValidationError(
                outcome.refusal.message, code=outcome.refusal.rule, field="amount"
            )
        return outcome


def _without_campaign_rules(facts: Facts, campaign: Campaign) -> Facts:
    """For a staff grant the promo code is not asked for (staff grant on the client's behalf)."""
    codes = facts.redeemed_codes | ({campaign.promo_code} if campaign.promo_code else set())
    return replace(facts, redeemed_codes=frozenset(codes))


# ---------------------------------------------------------------------------- unlock, forfeit


def _close_if_done(bonus: Bonus, status: str) -> None:
    if bonus.remaining <= 0 and bonus.status == BonusStatus.ACTIVE:
        final = status
        if status == BonusStatus.COMPLETED and bonus.unlocked == 0:
            final = BonusStatus.FORFEITED
        _check_transition(BONUS_TRANSITIONS, "bonus", bonus.status, final)
        bonus.status = final
        bonus.closed_at = clock.now()


def _release(
    bonus: Bonus, amount: int, key: str, reason_code: str, reason: str, actor: str, figures: dict
) -> int:
    """Credits: move ``amount`` (at most what is left) from bonus to cash. Per-deal kinds:
    pay it from the bonus expense to cash. Caller holds the bonus lock."""
    amount = min(amount, bonus.remaining)
    if amount <= 0:
        return 0
    wallet_cash = ledger.wallet_account(bonus.client_id, bonus.currency, "cash").id
    if bonus.kind in CREDIT_KINDS:
        debit_account = ledger.wallet_account(bonus.client_id, bonus.currency, "bonus").id
        kind = "bonus_unlock"
    else:
        debit_account = ledger.system_account("bonus_expense", bonus.currency).id
        kind = f"bonus_{bonus.kind}"
    ledger.transfer(
        f"bonus:{bonus.id}:release:{key}",
        debit_account=debit_account,
        credit_account=wallet_cash,
        amount=amount,
        currency=bonus.currency,
        kind=kind,
        metadata={"bonus_id": str(bonus.id), "key": key},
        actor=actor,
        reason=reason,
    )
    bonus.unlocked += amount
    _close_if_done(bonus, BonusStatus.COMPLETED)
    bonus.save(update_fields=["unlocked", "volume_done", "status", "closed_at"])
    event_kind = "unlocked" if bonus.kind in CREDIT_KINDS else "paid"
    _record_event(bonus, key, event_kind, amount, reason_code, reason, actor, figures)
    if bonus.kind == Kind.TRADABLE_CREDIT and bonus.login is not None:
        _queue_credit(bonus, "out", amount)
    emit(BonusUnlocked(**_event_payload(bonus, amount, reason, figures)))
    audit.record(
        actor=actor,
        action=f"bonuses.{event_kind}",
        object_type="bonus",
        object_id=str(bonus.id),
        reason=reason,
        after={"amount": amount, "key": key, **_figures(bonus)},
    )
    return amount


def _forfeit(
    bonus: Bonus,
    amount: int,
    key: str,
    reason_code: str,
    reason: str,
    actor: str,
    figures: dict[str, Any] | None = None,
    final_status: str = BonusStatus.FORFEITED,
) -> int:
    """Remove ``amount`` (at most what is left) of a locked bonus; returns the money removed.

    Caller holds the lock. For cashback and rebates nothing is held, so closing one moves no
    money: the unpaid part of the cap is recorded as ``unpaid_cap``.
    """
    amount = min(amount, bonus.remaining)
    if amount <= 0 or bonus.status != BonusStatus.ACTIVE:
        return 0
    money = amount if bonus.kind in CREDIT_KINDS else 0
    figures = {**(figures or {}), "rule": reason_code}
    if not money:
        figures["unpaid_cap"] = amount
    if money:
        ledger.transfer(
            f"bonus:{bonus.id}:forfeit:{key}",
            debit_account=ledger.wallet_account(bonus.client_id, bonus.currency, "bonus").id,
            credit_account=ledger.system_account("bonus_expense", bonus.currency).id,
            amount=money,
            currency=bonus.currency,
            kind="bonus_forfeit",
            metadata={"bonus_id": str(bonus.id), "key": key, "rule": reason_code},
            actor=actor,
            reason=reason,
        )
    bonus.forfeited += amount
    if bonus.remaining <= 0:
        _check_transition(BONUS_TRANSITIONS, "bonus", bonus.status, final_status)
        bonus.status, bonus.closed_at = final_status, clock.now()
    bonus.save(update_fields=["forfeited", "status", "closed_at"])
    kind = "expired" if final_status == BonusStatus.EXPIRED else "forfeited"
    _record_event(bonus, key, kind, money, reason_code, reason, actor, figures)
    if money and bonus.kind == Kind.TRADABLE_CREDIT and bonus.login is not None:
        _queue_credit(bonus, "out", money)
    emit(BonusForfeited(**_event_payload(bonus, money, reason, figures)))
    audit.record(
        actor=actor,
        action=f"bonuses.{kind}",
        object_type="bonus",
        object_id=str(bonus.id),
        reason=reason,
        after={"amount": money, **figures, **_figures(bonus)},
    )
    return money


@dataclass(frozen=True)
class DealFacts:
    """A closed deal as the unlock rules need it (money in minor units, volume 1/10,000 lot)."""

    server: str
    deal: int
    login: int
    client_id: UUID
    currency: str
    volume: int
    net_profit: int  # profit + commission + swap + fee
    closed_at: datetime

    @property
    def key(self) -> str:
        """The deal's identity: ``server:deal``."""
        return f"{self.server}:{self.deal}"


def _equity(client_id: UUID, server: str, login: int) -> int | None:
    try:
        from brokerdesk.trading.queries import accounts_of
    except ImportError:  # pragma: no cover
        return None
    for account in accounts_of(client_id):
        if account.server == server and account.login == login:
            return account.equity
    return None


def _deal_release(bonus: Bonus, deal: DealFacts) -> tuple[int, str, str, dict[str, Any]]:
    """What this deal releases for ``bonus`` (after adding its volume): amount, code, reason."""
    c = bonus.campaign
    lots = deal.volume / LOT
    figures: dict[str, Any] = {"deal": deal.key, "lots": lots}
    if bonus.kind == Kind.REBATE:
        target = bonus.volume_done * c.rebate_per_lot // LOT
        amount = target - bonus.unlocked
        figures["per_lot"] = c.rebate_per_lot
        return amount, "rebate", _("Rebate for %(lots)s lots") % {"lots": lots}, figures
    if bonus.kind == Kind.CASHBACK:
        loss = max(-deal.net_profit, 0)
        figures.update({"loss": loss, "cashback_bps": c.cashback_bps})
        reason = _("Cashback on a losing trade")
        return loss * c.cashback_bps // 10_000, "cashback", reason, figures
    if c.unlock_per_lot:
        target = min(bonus.volume_done * c.unlock_per_lot // LOT, bonus.amount - bonus.forfeited)
        figures["per_lot"] = c.unlock_per_lot
        reason = _("Unlocked for %(lots)s lots traded") % {"lots": lots}
        return target - bonus.unlocked, "lots_traded", reason, figures
    if c.lots_required and bonus.volume_done >= c.lots_required:
        figures["lots_required"] = c.lots_required / LOT
        reason = _("Trading target of %(lots)s lots reached") % {"lots": c.lots_required / LOT}
        return bonus.remaining, "volume_target", reason, figures
    return 0, "", "", figures


def apply_deal(deal: DealFacts) -> int:
    """Count a closed deal towards the client's active bonuses in the deal's currency: partial
    or full unlocks, rebates and cashback. Each (bonus, deal) once; returns the total released."""
    released_total = 0
    with transaction.atomic():
        ids = list(
            Bonus.objects.filter(
                client_id=deal.client_id, currency=deal.currency, status=BonusStatus.ACTIVE
            )
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        if not ids:
            return 0
        bonuses = list(
            Bonus.objects.select_for_update()
            .select_related("campaign")
            .filter(pk__in=ids)
            .order_by("pk")
        )
        key = f"deal:{deal.key}"
        for bonus in sorted(bonuses, key=lambda b: (b.granted_at, b.pk)):
            if bonus.status != BonusStatus.ACTIVE or deal.closed_at < bonus.granted_at:
                continue
            if bonus.unlock_until and deal.closed_at > bonus.unlock_until:
                continue
            if _event_done(bonus, key):
                continue
            bonus.volume_done += deal.volume
            amount, code, reason, figures = _deal_release(bonus, deal)
            figures.update({"volume": deal.volume, "net_profit": deal.net_profit})
            held = _equity_hold(bonus, deal, amount)
            if held is not None:
                bonus.save(update_fields=["volume_done"])
                _record_event(bonus, key, "held", 0, "min_equity", held, "system:bonuses", figures)
                continue
            released = _release(bonus, amount, key, code, reason, "system:bonuses", figures)
            if not released:
                bonus.save(update_fields=["volume_done"])
                _record_event(
                    bonus, key, "progress", 0, "lots_traded", "", "system:bonuses", figures
                )
            released_total += released
        if released_total:
            _add_deal_cost(deal, released_total)
    return released_total


# ---------------------------------------------------------------------------- dealer corrections

CORRECTION_ACTOR = "system:bonuses"


@dataclass(frozen=True)
class Counted:
    """What the unlock rules count for one deal: whether it counts, its volume and net P/L."""

    counts: bool
    volume: int
    net_profit: int


NOT_COUNTED = Counted(False, 0, 0)


def counted_facts(state: dict[str, Any] | None) -> Counted:
    """A deal state (``before`` / ``after`` of ``trading.deal_corrected``) as the unlock rules
    count it: closing trade deals only, volume ``volume_closed`` (else ``volume``), never
    negative, net P/L profit + commission + swap + fee."""
    from brokerdesk.trading.platform.port import DealAction, DealEntry

    if not state:
        return NOT_COUNTED
    closing = {DealEntry.ENTRY_OUT, DealEntry.ENTRY_INOUT, DealEntry.ENTRY_OUT_BY}
    if int(state.get("entry", -1)) not in closing or int(state.get("action", -1)) not in (
        DealAction.DEAL_BUY,
        DealAction.DEAL_SELL,
    ):
        return NOT_COUNTED
    volume = max(int(state.get("volume_closed") or state.get("volume") or 0), 0)
    net = sum(int(state.get(k) or 0) for k in ("profit", "commission", "storage", "fee"))
    return Counted(True, volume, net)


def _paid_for_deal(bonus: Bonus, deal_key: str) -> int:
    """The money ``bonus`` released on one deal so far (its own event and its corrections)."""
    rows = BonusEvent.objects.filter(bonus=bonus, kind__in=["unlocked", "paid"]).filter(
        Q(key=f"deal:{deal_key}") | Q(key__startswith=f"correction:{deal_key}:")
    )
    return int(rows.aggregate(s=Sum("amount"))["s"] or 0)


def _correction_due(bonus: Bonus, deal_key: str, new: Counted, volume_before: int) -> int:
    """What ``bonus`` should release (> 0) or has released beyond its corrected figures
    (< 0) after its ``volume_done`` took the correction."""
    c = bonus.campaign
    if bonus.kind == Kind.REBATE:
        return bonus.volume_done * c.rebate_per_lot // LOT - bonus.unlocked
    if bonus.kind == Kind.CASHBACK:
        due = max(-new.net_profit, 0) * c.cashback_bps // 10_000 if new.counts else 0
        return due - _paid_for_deal(bonus, deal_key)
    if c.unlock_per_lot:
        target = min(bonus.volume_done * c.unlock_per_lot // LOT, bonus.amount - bonus.forfeited)
        return target - bonus.unlocked
    if c.lots_required:
        reached = bonus.volume_done >= c.lots_required
        if bonus.status == BonusStatus.ACTIVE:
            return bonus.remaining if reached else 0
        if not reached and volume_before >= c.lots_required:
            return -bonus.unlocked  # released on a target the corrected turnover misses
    return 0


def _correction_release_reason(bonus: Bonus, lots: float) -> tuple[str, str]:
    if bonus.kind == Kind.REBATE:
        return "rebate", _("Rebate for %(lots)s lots") % {"lots": lots}
    if bonus.kind == Kind.CASHBACK:
        return "cashback", _("Cashback on a losing trade")
    if bonus.campaign.unlock_per_lot:
        return "lots_traded", _("Unlocked for %(lots)s lots traded") % {"lots": lots}
    target = bonus.campaign.lots_required / LOT
    return "volume_target", _("Trading target of %(lots)s lots reached") % {"lots": target}


def _correct_bonus(
    bonus: Bonus, deal: DealFacts, change: str, version_msc: int, old: Counted, new: Counted
) -> int:
    """Apply one correction to one bonus that counted the deal (caller holds its lock);
    returns the money released. Nothing released earlier is taken back: an excess is
    recorded on the bonus's history for staff (``review``)."""
    key = f"correction:{deal.key}:{version_msc}"
    if _event_done(bonus, key):
        return 0
    volume_before = bonus.volume_done
    bonus.volume_done = max(bonus.volume_done + new.volume - old.volume, 0)
    due = _correction_due(bonus, deal.key, new, volume_before)
    figures: dict[str, Any] = {
        "deal": deal.key,
        "change": change,
        "version_msc": version_msc,
        "volume_before": old.volume,
        "volume_after": new.volume,
        "net_profit_before": old.net_profit,
        "net_profit_after": new.net_profit,
        "volume_done_before": volume_before,
        "correction": True,
    }
    active = bonus.status == BonusStatus.ACTIVE
    held = None
    if active and due > 0:
        held = _equity_hold(bonus, deal, due)
        if held is None:
            code, reason = _correction_release_reason(bonus, max(new.volume - old.volume, 0) / LOT)
            released = _release(bonus, due, key, code, reason, CORRECTION_ACTOR, figures)
            if released:
                return released
    over = max(-due, 0)
    figures.update(
        {
            "over_released": over,
            "not_released": max(due, 0) if not active or held else 0,
            "held": held is not None,
            "review": over > 0,
        }
    )
    note = (
        f"Dealer {'deleted' if change == 'delete' else 'corrected'} deal {deal.key}: counted "
        f"volume {old.volume} -> {new.volume}, net P/L {old.net_profit} -> {new.net_profit}."
    )
    if over:
        note += (
            f" {over} minor units were already released on the old figures; not taken back "
            "automatically (staff review)."
        )
    bonus.save(update_fields=["volume_done"])
    _record_event(bonus, key, "corrected", 0, "deal_corrected", note, CORRECTION_ACTOR, figures)
    audit.record(
        actor=CORRECTION_ACTOR,
        action="bonuses.deal_corrected",
        object_type="bonus",
        object_id=str(bonus.id),
        reason=note,
        before={"volume_done": volume_before},
        after={"volume_done": bonus.volume_done, **figures},
    )
    return 0


def _locked_correction(deal_key: str) -> DealCorrection | None:
    return DealCorrection.objects.select_for_update().filter(pk=deal_key).first()


def _stale(record: DealCorrection | None, version_msc: int) -> bool:
    """A repeat, a version older than the one applied, or anything after a delete (final)."""
    return record is not None and (record.change == "delete" or version_msc <= record.version_msc)


def _counted_so_far(deal_key: str, bonuses: list[Bonus], before: Counted) -> Counted:
    """What the bonuses counted for a deal never corrected before: the figures their deal
    event recorded (``before`` for events older than those figures)."""
    event = (
        BonusEvent.objects.filter(bonus__in=bonuses, key=f"deal:{deal_key}")
        .order_by("at", "pk")
        .first()
    )
    figures = event.figures if event is not None else {}
    if "volume" in figures:
        return Counted(True, int(figures["volume"]), int(figures.get("net_profit") or 0))
    return before


def apply_correction(payload: dict[str, Any], occurred_at: str = "") -> int:
    """Apply one ``trading.deal_corrected`` to the bonuses that counted the deal; returns the
    money it released.

    Newest version wins per deal (``DealCorrection``): a repeated or older version, or one
    after a delete, changes nothing. Each bonus's ``volume_done`` moves by the counted
    volume after - before (never below 0) and its release follows the campaign's rule on the
    corrected figures, each (bonus, deal, version) once. A deal no bonus counted changes no
    bonus.
    """
    server, ticket = str(payload["server"]), int(payload["deal"])
    change, version = str(payload.get("change") or "update"), int(payload["version_msc"])
    deal_key = f"{server}:{ticket}"
    before = counted_facts(payload.get("before"))
    new = NOT_COUNTED if change == "delete" else counted_facts(payload.get("after"))
    if not before.counts and not new.counts:
        return 0  # not a closing trade deal: bonuses never count it
    owner = _owners([{"server": server, "login": int(payload["login"])}]).get(
        (server, int(payload["login"]))
    )
    released = 0
    with transaction.atomic():
        bonuses: list[Bonus] = []
        if owner is not None:
            counted = BonusEvent.objects.filter(
                bonus__client_id=owner[0], key=f"deal:{deal_key}"
            ).values_list("bonus_id", flat=True)
            bonuses = list(
                Bonus.objects.select_for_update()
                .select_related("campaign")
                .filter(pk__in=list(counted))
                .order_by("pk")
            )
        record = _locked_correction(deal_key)
        if _stale(record, version):
            return 0
        if record is not None:
            old = Counted(record.counts, record.volume, record.net_profit)
        else:
            old = _counted_so_far(deal_key, bonuses, before)
        now = clock.now()
        values = {
            "version_msc": version,
            "change": change,
            "counts": new.counts,
            "volume": new.volume,
            "net_profit": new.net_profit,
            "at": now,
        }
        if record is None:
            try:
                with transaction.atomic():
                    DealCorrection.objects.create(deal_key=deal_key, **values)
            except IntegrityError:  # a concurrent first correction of the same deal
                record = _locked_correction(deal_key)
                if record is None or _stale(record, version):
                    return 0
                old = Counted(record.counts, record.volume, record.net_profit)
        if record is not None:
            DealCorrection.objects.filter(pk=deal_key).update(**values)
        if owner is None or not bonuses:
            return 0
        state = payload.get("after") or payload.get("before") or {}
        deal = DealFacts(
            server=server,
            deal=ticket,
            login=int(payload["login"]),
            client_id=owner[0],
            currency=owner[1],
            volume=new.volume,
            net_profit=new.net_profit,
            closed_at=_deal_time(state, occurred_at)
            if state.get("time_msc") or occurred_at
            else now,
        )
        for bonus in sorted(bonuses, key=lambda b: (b.granted_at, b.pk)):
            released += _correct_bonus(bonus, deal, change, version, old, new)
        if released:
            _add_deal_cost(deal, released)
    return released


def settle_correction_events(events: list[tuple[dict[str, Any], str]]) -> dict[str, int]:
    """``apply_correction`` for ``trading.deal_corrected`` payloads (with their
    ``occurred_at``), in order; returns the bonus money each deal has released in all
    (``server:deal`` → minor units), for revenue share net of bonuses."""
    for payload, at in events:
        apply_correction(payload, at)
    keys = [f"{p.get('server')}:{p.get('deal')}" for p, _ in events]
    return dict(DealBonusCost.objects.filter(deal_key__in=keys).values_list("deal_key", "amount"))


def _deal_time(p: dict[str, Any], occurred_at: str) -> datetime:
    if p.get("time_msc"):
        return datetime.fromtimestamp(int(p["time_msc"]) / 1000, tz=UTC)
    raw = p.get("time") or p.get("closed_at") or occurred_at
    when = datetime.fromisoformat(str(raw))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _owners(payloads: list[dict[str, Any]]) -> dict[tuple[str, int], tuple[UUID, str]]:
    """The client and account currency of each deal's login (one query for the known ones)."""
    from brokerdesk.clients.queries import client_for_login

    keys = {(str(p["server"]), int(p["login"])) for p in payloads}
    owners: dict[tuple[str, int], tuple[UUID, str]] = {}
    logins = {login for _, login in keys}
    for a in KnownAccount.objects.filter(login__in=logins):
        if (a.server, a.login) in keys:
            owners[(a.server, a.login)] = (a.client_id, a.currency)
    for p in payloads:
        key = (str(p["server"]), int(p["login"]))
        if key in owners:
            continue
        linked = client_for_login(*key)
        if linked is not None:
            owners[key] = (linked.client_id, linked.currency)
        elif p.get("client_id") and p.get("currency"):
            owners[key] = (UUID(str(p["client_id"])), str(p["currency"]).upper())
    return owners


def deals_from_events(events: Iterable[tuple[dict[str, Any], str]]) -> list[DealFacts]:
    """The deals of ``trading.deal_closed`` payloads (with their ``occurred_at``) that belong
    to a known client; others are left out."""
    items = [(p, at) for p, at in events if p.get("server") and p.get("login") is not None]
    owners = _owners([p for p, _ in items])
    deals = []
    for p, at in items:
        owner = owners.get((str(p["server"]), int(p["login"])))
        if owner is None:
            continue
        net = sum(int(p.get(k) or 0) for k in ("profit", "commission", "fee"))
        deals.append(
            DealFacts(
                server=str(p["server"]),
                deal=int(p.get("deal") or p.get("ticket") or 0),
                login=int(p["login"]),
                client_id=owner[0],
                currency=owner[1],
                volume=int(p.get("volume_closed") or p.get("volume") or 0),
                net_profit=net + int(p.get("storage") or p.get("swap") or 0),
                closed_at=_deal_time(p, at),
            )
        )
    return deals


def apply_deals(deals: list[DealFacts]) -> dict[str, int]:
    """Count closed deals towards their clients' active bonuses and return the bonus money
    each deal released (``server:deal`` → minor units; earlier calls included).

    The bonuses consumer calls it, and so does IB accrual before it computes revenue share
    net of bonuses: whichever sees a deal first applies it, the other finds it done (each
    bonus counts a deal once, under the bonus's row lock), so the cost is the same in any order.
    """
    clients = {d.client_id for d in deals if d.volume > 0}
    live = set(
        Bonus.objects.filter(client_id__in=clients, status=BonusStatus.ACTIVE)
        .values_list("client_id", flat=True)
        .distinct()
    )
    corrected = {
        c.deal_key: c
        for c in DealCorrection.objects.filter(
            deal_key__in=[d.key for d in deals if d.client_id in live]
        )
    }
    for deal in deals:
        correction = corrected.get(deal.key)
        if correction is not None:  # corrected before it reached us: count its newest state
            if not correction.counts:
                continue
            deal = replace(deal, volume=correction.volume, net_profit=correction.net_profit)
        if deal.client_id in live and deal.volume > 0:
            apply_deal(deal)
    keys = [d.key for d in deals]
    return dict(DealBonusCost.objects.filter(deal_key__in=keys).values_list("deal_key", "amount"))


def settle_deal_events(events: list[tuple[dict[str, Any], str]]) -> dict[str, int]:
    """``apply_deals`` for raw ``trading.deal_closed`` payloads (with their ``occurred_at``);
    skips finding the deals' owners when no bonus is active at all (the common case)."""
    if Bonus.objects.filter(status=BonusStatus.ACTIVE).exists():
        return apply_deals(deals_from_events(events))
    keys = [f"{p.get('server')}:{p.get('deal') or p.get('ticket')}" for p, _ in events]
    return dict(DealBonusCost.objects.filter(deal_key__in=keys).values_list("deal_key", "amount"))


def _equity_hold(bonus: Bonus, deal: DealFacts, amount: int) -> str | None:
    """A reason to hold an unlock when the account's equity is under the campaign's minimum."""
    minimum = bonus.campaign.min_equity
    if amount <= 0 or not minimum or bonus.kind not in CREDIT_KINDS:
        return None
    equity = _equity(deal.client_id, deal.server, deal.login)
    if equity is None or equity >= minimum:
        return None
    return _("Unlock held: the account's equity is below the offer's minimum.")


def _add_deal_cost(deal: DealFacts, amount: int) -> None:
    updated = DealBonusCost.objects.filter(deal_key=deal.key).update(amount=F("amount") + amount)
    if not updated:
        DealBonusCost.objects.create(
            deal_key=deal.key,
            client_id=deal.client_id,
            currency=deal.currency,
            amount=amount,
            at=clock.now(),
        )


def _live_credit_bonuses(client_id: UUID, currency: str | None = None) -> list[Bonus]:
    query = Bonus.objects.filter(
        client_id=client_id, status=BonusStatus.ACTIVE, kind__in=list(CREDIT_KINDS)
    )
    if currency is not None:
        query = query.filter(currency=currency)
    ids = list(query.order_by("pk").values_list("pk", flat=True))
    return list(
        Bonus.objects.select_for_update()
        .select_related("campaign")
        .filter(pk__in=ids)
        .order_by("pk")
    )


def withdrawal_forfeit_amount(bonus: Bonus, amount: int, cash_before: int) -> int:
    """What a withdrawal of ``amount`` from ``cash_before`` removes from ``bonus``: all of what
    is locked (``full``), or the withdrawn share of it, rounded up (``proportional``)."""
    if bonus.remaining <= 0:
        return 0
    if bonus.campaign.withdrawal_forfeit == "proportional" and cash_before > amount:
        return min(bonus.remaining, -(-bonus.remaining * amount // cash_before))
    return bonus.remaining


def forfeit_for_withdrawal(
    *, client_id: UUID | str, currency: str, amount: int, withdrawal_id: str
) -> int:
    """A withdrawal before unlock forfeits locked credit bonuses (``withdrawal.requested``);
    the portal showed the same figure beforehand (``queries.forfeiture_preview``)."""
    from brokerdesk.ledger.queries import balance

    client_uuid = UUID(str(client_id))
    total = 0
    with transaction.atomic():
        bonuses = _live_credit_bonuses(client_uuid, currency)
        if not bonuses:
            return 0
        cash = balance(ledger.wallet_account(client_uuid, currency, "cash").id).available
        cash_before = cash + amount
        for bonus in bonuses:
            key = f"withdrawal:{withdrawal_id}"
            if _event_done(bonus, key):
                continue
            remove = withdrawal_forfeit_amount(bonus, amount, cash_before)
            reason = _("Withdrawal of %(amount)s before the bonus was unlocked") % {
                "amount": Money(amount, currency)
            }
            figures = {
                "withdrawal": amount,
                "cash_before": cash_before,
                "withdrawal_id": withdrawal_id,
            }
            total += _forfeit(bonus, remove, key, "withdrawal", reason, "system:bonuses", figures)
    return total


def forfeit_for_chargeback(*, client_id: UUID | str, payment_id: str, reason: str) -> int:
    """A reversed deposit (chargeback, failed settlement) forfeits the bonuses it earned."""
    total = 0
    with transaction.atomic():
        ids = list(
            Bonus.objects.filter(
                client_id=UUID(str(client_id)),
                deposit_id=str(payment_id),
                status=BonusStatus.ACTIVE,
            )
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        for bonus_id in ids:
            bonus = _locked_bonus(bonus_id)
            text = _("The deposit that earned this bonus was reversed: %(why)s") % {
                "why": reason or _("chargeback")
            }
            total += _forfeit(
                bonus,
                bonus.remaining,
                f"chargeback:{payment_id}",
                "chargeback",
                text,
                "system:bonuses",
                {"deposit_id": str(payment_id)},
            )
    return total


def forfeit_for_closure(client_id: UUID | str) -> int:
    """The client's account was closed: every active bonus is forfeited."""
    total = 0
    client_uuid = UUID(str(client_id))
    with transaction.atomic():
        ids = list(
            Bonus.objects.filter(client_id=client_uuid, status=BonusStatus.ACTIVE)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        for bonus_id in ids:
            bonus = _locked_bonus(bonus_id)
            text = _("The account was closed.")
            total += _forfeit(
                bonus, bonus.remaining, "closure", "account_closed", text, "system:bonuses"
            )
    return total


def expire_due(*, now: datetime | None = None, limit: int = 500) -> int:
    """Forfeit what is left of bonuses past their expiry (the periodic job); returns how many."""
    now = now or clock.now()
    due = list(
        Bonus.objects.filter(status=BonusStatus.ACTIVE, expires_at__lte=now)
        .order_by("expires_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    count = 0
    for bonus_id in due:
        with transaction.atomic():
            bonus = _locked_bonus(bonus_id)
            if bonus.status != BonusStatus.ACTIVE:
                continue
            text = _("The bonus expired before it was unlocked.")
            figures = {"expires_at": bonus.expires_at.isoformat() if bonus.expires_at else None}
            _forfeit(
                bonus,
                bonus.remaining,
                "expiry",
                "expired",
                text,
                "system:bonuses",
                figures,
                final_status=BonusStatus.EXPIRED,
            )
            count += bonus.status == BonusStatus.EXPIRED
    return count


def forfeit_manual(
    bonus_id: UUID | str, *, reason: str, by: Any, request_key: str, amount: int | None = None
) -> int:
    """Staff forfeit (finance or admin) of all or part of what is left, with a reason.
    Idempotent on ``request_key`` (a repeat removes nothing more and returns 0)."""
    actor = _staff(by, Role.FINANCE)
    reason = _need_reason(reason)
    if not (request_key or "").strip():
        raise ValidationError(_("A request key is required."), field="request_key")
    key = f"manual:{request_key.strip()}"
    with transaction.atomic():
        bonus = _locked_bonus(bonus_id)
        if _event_done(bonus, key):
            return 0
        if bonus.status != BonusStatus.ACTIVE:
            raise IllegalTransition(
                _("This bonus is closed; nothing is left to forfeit."),
                code="bonus_closed",
                field="bonus_id",
            )
        remove = bonus.remaining if amount is None else _positive_amount(amount)
        if remove > bonus.remaining:
            raise ValidationError(
                _("Only %(left)s is left to forfeit.")
                % {"left": Money(bonus.remaining, bonus.currency)},
                code="too_much",
                field="amount",
            )
        return _forfeit(bonus, remove, key, "staff", reason, actor)


# ---------------------------------------------------------------------------- trading accounts


def record_account(
    *, server: str, login: int, client_id: UUID | str, currency: str, group: str, is_live: bool
) -> None:
    """Remember a client's trading account; a tradable credit waiting for one is queued."""
    client_uuid = UUID(str(client_id))
    with transaction.atomic():
        try:
            with transaction.atomic():
                KnownAccount.objects.create(
                    server=server,
                    login=login,
                    client_id=client_uuid,
                    currency=currency,
                    group=group,
                    is_live=is_live,
                    opened_at=clock.now(),
                )
        except IntegrityError:
            return
        if not is_live:
            return
        waiting = list(
            Bonus.objects.select_for_update()
            .filter(
                client_id=client_uuid,
                currency=currency,
                kind=Kind.TRADABLE_CREDIT,
                status=BonusStatus.ACTIVE,
                login__isnull=True,
            )
            .order_by("pk")
        )
        for bonus in waiting:
            bonus.server, bonus.login = server, login
            bonus.save(update_fields=["server", "login"])
            _queue_credit(bonus, "in", bonus.remaining, op_id=bonus.id)


# ---------------------------------------------------------------------------- platform credit


def _queue_credit(bonus: Bonus, direction: str, amount: int, op_id: UUID | None = None) -> None:
    from brokerdesk.core.ids import new_id
    from brokerdesk.trading.platform.port import transfer_comment

    if amount <= 0 or bonus.login is None:
        return
    op_id = op_id or new_id()
    PlatformCreditOp.objects.create(
        id=op_id,
        bonus=bonus,
        direction=direction,
        amount=amount,
        server=bonus.server,
        login=bonus.login,
        comment=transfer_comment(op_id, prefix="bn:"),
        created_at=clock.now(),
    )


PortFor = Callable[[str], Any]
SENT_GRACE = timedelta(seconds=30)


def sync_platform_credit(port_for: PortFor, *, limit: int = 200) -> int:
    """Send queued credit operations to the platform, in order per bonus; returns how many
    finished. A lost answer is looked up by its comment before anything is sent again; a
    credit out above what the platform still holds (the client lost it trading) is
    recorded as skipped with the reason."""
    todo = list(
        PlatformCreditOp.objects.filter(state__in=[CreditOpState.PENDING, CreditOpState.SENT])
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    done = 0
    for op_id in todo:
        done += _sync_one(op_id, port_for)
    return done


def _sync_one(op_id: UUID, port_for: PortFor) -> int:
    from brokerdesk.trading.platform.port import BalanceOp, ConfirmationLost, NoMoney, PlatformError

    with transaction.atomic():
        op = PlatformCreditOp.objects.select_for_update().filter(pk=op_id).first()
        if op is None or op.state not in (CreditOpState.PENDING, CreditOpState.SENT):
            return 0
        earlier = PlatformCreditOp.objects.filter(
            bonus_id=op.bonus_id,
            state__in=[CreditOpState.PENDING, CreditOpState.SENT],
            created_at__lt=op.created_at,
        ).exists()
        if earlier:
            return 0
        port = port_for(op.server)
        since = int((op.created_at - timedelta(minutes=5)).timestamp() * 1000)
        if op.state == CreditOpState.SENT:
            found = port.find_balance_deal(op.login, op.comment, since)
            if found is not None:
                return _finish(op, CreditOpState.DONE, ticket=found.deal, note="found by comment")
            if op.sent_at and clock.now() - op.sent_at < SENT_GRACE:
                return 0
        op.state, op.sent_at, op.attempts = CreditOpState.SENT, clock.now(), op.attempts + 1
        op.save(update_fields=["state", "sent_at", "attempts"])
    # committed as SENT before the platform call: a crash leaves it to be found by comment
    direction = BalanceOp.CREDIT_IN if op.direction == "in" else BalanceOp.CREDIT_OUT
    try:
        ticket = port.balance_operation(op.login, direction, op.amount, op.comment)
    except ConfirmationLost:
        return 0
    except NoMoney as exc:
        with transaction.atomic():
            return _finish(op, CreditOpState.SKIPPED, note=f"platform refused: {exc.message}")
    except PlatformError as exc:
        with transaction.atomic():
            PlatformCreditOp.objects.filter(pk=op.pk).update(
                state=CreditOpState.PENDING, note=exc.message[:500]
            )
        return 0
    with transaction.atomic():
        return _finish(op, CreditOpState.DONE, ticket=ticket)


def _finish(op: PlatformCreditOp, state: str, *, ticket: int | None = None, note: str = "") -> int:
    PlatformCreditOp.objects.filter(pk=op.pk).update(
        state=state, ticket=ticket, note=note, done_at=clock.now()
    )
    bonus = Bonus.objects.get(pk=op.bonus_id)
    kind = f"credit_{op.direction}" if state == CreditOpState.DONE else "credit_skipped"
    text = (
        _("Platform credit updated on login %(login)s.") % {"login": op.login}
        if state == CreditOpState.DONE
        else note
    )
    _record_event(
        bonus,
        f"credit:{op.pk}",
        kind,
        op.amount,
        kind,
        text,
        "system:bonuses",
        {"ticket": ticket, "login": op.login, "server": op.server, "comment": op.comment},
    )
    return 1
