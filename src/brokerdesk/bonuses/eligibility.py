"""Eligibility of a client for a campaign, and the amount a grant comes to (pure functions).

``check(campaign, facts)`` returns the first rule the client breaks (a stable code and a
sentence for support), or ``None``. ``grant_amount`` applies the percent/fixed amount and the
limits (per grant, per client, budget). The services gather the facts; nothing here reads the
database, so the whole matrix is testable from values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase

from django.utils.translation import gettext as _

from brokerdesk.bonuses.models import Campaign, CampaignStatus, Kind

PER_DEAL_KINDS = (Kind.CASHBACK, Kind.REBATE)
CREDIT_KINDS = (Kind.TRADABLE_CREDIT, Kind.CREDIT)


@dataclass(frozen=True)
class Facts:
    """What the rules look at: the client, and the deposit when there is one."""

    kyc_state: str
    jurisdiction: str
    policy_allowed: bool = True
    policy_reason: str = ""
    account_groups: tuple[str, ...] = ()
    redeemed_codes: frozenset[str] = field(default_factory=frozenset)
    deposit_amount: int | None = None
    deposit_currency: str = ""
    deposit_method: str = ""
    first_deposit: bool | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class Refusal:
    """The rule a client broke and why, in words support can read out."""

    rule: str
    message: str


def _in_window(campaign: Campaign, at: datetime | None) -> bool:
    if at is None:
        return True
    if campaign.starts_at and at < campaign.starts_at:
        return False
    return not (campaign.ends_at and at >= campaign.ends_at)


def _deposit_refusal(campaign: Campaign, facts: Facts) -> Refusal | None:
    if facts.deposit_amount is None:
        return None
    if facts.deposit_currency and facts.deposit_currency != campaign.currency:
        return Refusal(
            "currency",
            _("The deposit is in %(got)s; this offer is for %(want)s deposits.")
            % {"got": facts.deposit_currency, "want": campaign.currency},
        )
    if facts.deposit_amount < campaign.min_deposit:
        return Refusal("min_deposit", _("The deposit is below this offer's minimum."))
    methods = [m.lower() for m in campaign.deposit_methods]
    if methods and facts.deposit_method.lower() not in methods:
        return Refusal(
            "deposit_method",
            _("Deposits by %(method)s do not qualify for this offer.")
            % {"method": facts.deposit_method or "?"},
        )
    if campaign.deposit_sequence == "first" and facts.first_deposit is False:
        return Refusal("first_deposit_only", _("This offer is for a first deposit only."))
    if campaign.deposit_sequence == "recurring" and facts.first_deposit is True:
        return Refusal("recurring_only", _("This offer is for deposits after the first one."))
    return None


def check(campaign: Campaign, facts: Facts) -> Refusal | None:
    """The first eligibility rule ``facts`` break for ``campaign``, or ``None`` (eligible)."""
    if campaign.status != CampaignStatus.ACTIVE or not _in_window(campaign, facts.at):
        return Refusal("campaign_inactive", _("This offer is not running."))
    refusal = _deposit_refusal(campaign, facts)
    if refusal is not None:
        return refusal
    if campaign.promo_code and campaign.promo_code.upper() not in facts.redeemed_codes:
        return Refusal("promo_code", _("This offer needs its promo code first."))
    if campaign.jurisdictions and facts.jurisdiction not in campaign.jurisdictions:
        return Refusal("jurisdiction", _("This offer is not available in your jurisdiction."))
    if campaign.kyc_states and facts.kyc_state not in campaign.kyc_states:
        return Refusal("kyc_status", _("This offer needs a verified account."))
    if not facts.policy_allowed:
        return Refusal("policy", facts.policy_reason or _("Bonuses are not offered to you."))
    groups = campaign.account_groups
    if groups and not any(fnmatchcase(g, p) for g in facts.account_groups for p in groups):
        return Refusal(
            "account_group", _("None of your trading accounts is in this offer's group.")
        )
    return None


def base_amount(campaign: Campaign, deposit_amount: int | None) -> int:
    """The bonus before limits: a percent of the deposit plus the fixed amount.

    Cashback and rebate pay per deal: their grant is the payout cap (``max_per_grant``).
    """
    if campaign.kind in PER_DEAL_KINDS:
        return max(campaign.max_per_grant, 0)
    amount = campaign.fixed_amount
    if deposit_amount and campaign.percent_bps:
        amount += deposit_amount * campaign.percent_bps // 10_000
    if campaign.max_per_grant:
        amount = min(amount, campaign.max_per_grant)
    return max(amount, 0)


def grant_amount(
    campaign: Campaign, deposit_amount: int | None, *, client_total: int, campaign_total: int
) -> tuple[int, Refusal | None]:
    """The amount after the per-client cap and the budget; a refusal when nothing is left."""
    amount = base_amount(campaign, deposit_amount)
    if amount <= 0:
        return 0, Refusal("zero_amount", _("This deposit earns no bonus under this offer."))
    if campaign.cap_per_client:
        left = campaign.cap_per_client - client_total
        if left <= 0:
            return 0, Refusal("client_cap", _("You have already received this offer's maximum."))
        amount = min(amount, left)
    if campaign.budget:
        left = campaign.budget - campaign_total
        if left <= 0:
            return 0, Refusal("budget", _("This offer's budget is used up."))
        amount = min(amount, left)
    return amount, None
