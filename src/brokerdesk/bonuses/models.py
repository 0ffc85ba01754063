"""Tables of bonuses (only this module writes them, through ``services``).

* ``Campaign``: the terms of an offer (eligibility, limits, unlock and forfeiture rules). Its
  terms are frozen once it has a grant; a change is a new version (``revise_campaign``).
* ``Bonus``: one grant to one client, with its running figures (granted, unlocked, forfeited).
* ``BonusEvent``: the bonus's history (why it was granted, unlocked, removed), with figures;
  unique per (bonus, key), which makes every deal, withdrawal or job act on a bonus once.
* ``GrantDecision``: why an automatic grant was given or refused (support's "why no bonus").
* ``PromoRedemption``: a promo code a client entered.
* ``KnownAccount``: the client's trading accounts (from ``trading.account_opened``).
* ``PlatformCreditOp``: a credit in/out to send to the trading platform (tradable credit).
* ``DealBonusCost``: the bonus money one closed deal released (fed to IB revenue share).
* ``DealCorrection``: the newest dealer correction of a deal (what the unlock rules now count).
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from brokerdesk.core.ids import new_id


class Kind(models.TextChoices):
    """What a bonus is."""

    TRADABLE_CREDIT = "tradable_credit", _("Tradable credit")
    CREDIT = "credit", _("Non-withdrawable credit")
    CASHBACK = "cashback", _("Cashback")
    REBATE = "rebate", _("Rebate")


class Trigger(models.TextChoices):
    """What grants a campaign's bonus."""

    DEPOSIT = "deposit", _("Deposit")
    PROMO = "promo", _("Promo code")
    MANUAL = "manual", _("Staff only")


class CampaignStatus(models.TextChoices):
    """A campaign's life: active ↔ paused → ended."""

    ACTIVE = "active", _("Active")
    PAUSED = "paused", _("Paused")
    ENDED = "ended", _("Ended")


class BonusStatus(models.TextChoices):
    """A bonus's life (see ``services.BONUS_TRANSITIONS``)."""

    ACTIVE = "active", _("Active")
    COMPLETED = "completed", _("Fully unlocked")
    FORFEITED = "forfeited", _("Forfeited")
    EXPIRED = "expired", _("Expired")


class Campaign(models.Model):
    """An offer's terms; ``code`` + ``version`` identify one version."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    code = models.SlugField(max_length=64)
    version = models.PositiveIntegerField(default=1)
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    status = models.CharField(
        max_length=10, choices=CampaignStatus.choices, default=CampaignStatus.ACTIVE
    )
    currency = models.CharField(max_length=10)
    # eligibility (an empty list means "any")
    kyc_states = models.JSONField(default=list)
    jurisdictions = models.JSONField(default=list)
    account_groups = models.JSONField(default=list)
    deposit_methods = models.JSONField(default=list)
    deposit_sequence = models.CharField(max_length=10, default="any")  # any | first | recurring
    promo_code = models.CharField(max_length=40, blank=True, default="")
    min_deposit = models.BigIntegerField(default=0)
    # amount and limits (minor units; bps = 1/10,000)
    percent_bps = models.PositiveIntegerField(default=0)
    fixed_amount = models.BigIntegerField(default=0)
    max_per_grant = models.BigIntegerField(default=0)  # 0 = no limit
    cap_per_client = models.BigIntegerField(default=0)  # 0 = no limit
    budget = models.BigIntegerField(default=0)  # 0 = no limit
    granted_total = models.BigIntegerField(default=0)
    # unlock (credits) and payouts per deal (cashback, rebate)
    unlock_per_lot = models.BigIntegerField(default=0)
    lots_required = models.BigIntegerField(default=0)  # volume units: 10,000 = 1 lot
    window_days = models.PositiveIntegerField(default=0)  # 0 = until expiry
    min_equity = models.BigIntegerField(default=0)
    rebate_per_lot = models.BigIntegerField(default=0)
    cashback_bps = models.PositiveIntegerField(default=0)
    # forfeiture
    expiry_days = models.PositiveIntegerField(default=0)  # 0 = never
    withdrawal_forfeit = models.CharField(max_length=12, default="full")  # full | proportional
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=120)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["code", "version"], name="bonus_campaign_version")
        ]
        indexes = [models.Index(fields=["status", "trigger"], name="bonus_campaign_live")]

    def __str__(self) -> str:
        return f"{self.name} (v{self.version})"


class Bonus(models.Model):
    """One grant; money figures in minor units of ``currency``."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="bonuses")
    client_id = models.UUIDField(db_index=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    currency = models.CharField(max_length=10)
    amount = models.BigIntegerField()  # granted (credits) or the payout cap (cashback, rebate)
    unlocked = models.BigIntegerField(default=0)  # credits: moved to cash; others: paid out
    forfeited = models.BigIntegerField(default=0)
    volume_done = models.BigIntegerField(default=0)  # lots traded, in volume units
    status = models.CharField(
        max_length=10, choices=BonusStatus.choices, default=BonusStatus.ACTIVE
    )
    grant_key = models.CharField(max_length=200, unique=True)
    source = models.CharField(max_length=10)  # deposit | promo | manual
    deposit_id = models.CharField(max_length=64, blank=True, default="")
    deposit_amount = models.BigIntegerField(default=0)
    server = models.CharField(max_length=64, blank=True, default="")
    login = models.BigIntegerField(null=True, blank=True)
    reason = models.TextField(blank=True, default="")
    granted_by = models.CharField(max_length=120)
    granted_at = models.DateTimeField()
    unlock_until = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["client_id", "currency", "status"], name="bonus_client_live"),
            models.Index(fields=["status", "expires_at"], name="bonus_expiry"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id} → {self.client_id}: {self.amount} {self.currency}"

    @property
    def remaining(self) -> int:
        """What is still locked (credits) or still payable (cashback, rebate)."""
        return self.amount - self.unlocked - self.forfeited


class BonusEvent(models.Model):
    """One step of a bonus's history, with its reason and the figures behind it."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    bonus = models.ForeignKey(Bonus, on_delete=models.PROTECT, related_name="events")
    key = models.CharField(max_length=200)
    kind = models.CharField(max_length=20)  # granted unlocked paid forfeited expired credit_*
    amount = models.BigIntegerField(default=0)
    reason_code = models.CharField(max_length=40)
    reason = models.TextField()
    figures = models.JSONField(default=dict)
    actor = models.CharField(max_length=120)
    at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["bonus", "key"], name="bonus_event_once")]
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} ({self.reason_code})"


class GrantDecision(models.Model):
    """The outcome of one automatic grant attempt (campaign and deposit, or promo code)."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="decisions")
    client_id = models.UUIDField(db_index=True)
    reference = models.CharField(max_length=100)
    granted = models.BooleanField()
    rule = models.CharField(max_length=40, blank=True, default="")
    message = models.TextField(blank=True, default="")
    at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "reference"], name="bonus_decision_once")
        ]

    def __str__(self) -> str:
        return f"{self.reference}: {'granted' if self.granted else self.rule}"


class PromoRedemption(models.Model):
    """A promo code a client entered (once per campaign)."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="redemptions")
    client_id = models.UUIDField()
    code = models.CharField(max_length=40)
    at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "client_id"], name="bonus_promo_once")
        ]

    def __str__(self) -> str:
        return f"{self.code} by {self.client_id}"


class KnownAccount(models.Model):
    """A client's trading account as ``trading.account_opened`` described it."""

    server = models.CharField(max_length=64)
    login = models.BigIntegerField()
    client_id = models.UUIDField(db_index=True)
    currency = models.CharField(max_length=10)
    group = models.CharField(max_length=128)
    is_live = models.BooleanField(default=True)
    opened_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["server", "login"], name="bonus_known_account")
        ]

    def __str__(self) -> str:
        return f"{self.server}/{self.login}"


class CreditOpState(models.TextChoices):
    """A platform credit operation: pending → sent → done (or failed / skipped)."""

    PENDING = "pending", _("Pending")
    SENT = "sent", _("Sent")
    DONE = "done", _("Done")
    SKIPPED = "skipped", _("Skipped")


class PlatformCreditOp(models.Model):
    """A credit in or out for the platform; ``comment`` carries our id (the bonus's for in)."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    bonus = models.ForeignKey(Bonus, on_delete=models.PROTECT, related_name="credit_ops")
    direction = models.CharField(max_length=3)  # in | out
    amount = models.BigIntegerField()
    server = models.CharField(max_length=64)
    login = models.BigIntegerField()
    comment = models.CharField(max_length=31)
    state = models.CharField(
        max_length=10, choices=CreditOpState.choices, default=CreditOpState.PENDING
    )
    ticket = models.BigIntegerField(null=True, blank=True)
    note = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["state", "server"], name="bonus_credit_todo")]

    def __str__(self) -> str:
        return f"credit {self.direction} {self.amount} on {self.server}/{self.login}"


class DealBonusCost(models.Model):
    """Bonus money a closed deal released (unlocks, cashback, rebates), per deal key."""

    deal_key = models.CharField(max_length=100, primary_key=True)  # server:deal
    client_id = models.UUIDField()
    currency = models.CharField(max_length=10)
    amount = models.BigIntegerField()
    at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.deal_key}: {self.amount} {self.currency}"


class DealCorrection(models.Model):
    """The newest dealer correction (``trading.deal_corrected``) of a deal, as bonuses count it.

    ``counts`` is False once the deal is deleted (or no longer a closing trade); ``volume`` and
    ``net_profit`` are what the unlock rules now count for it. Newer versions replace older
    ones; an older or repeated version changes nothing.
    """

    deal_key = models.CharField(max_length=100, primary_key=True)  # server:deal
    version_msc = models.BigIntegerField()
    change = models.CharField(max_length=10)  # update | delete
    counts = models.BooleanField()
    volume = models.BigIntegerField(default=0)
    net_profit = models.BigIntegerField(default=0)
    at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.deal_key} v{self.version_msc} ({self.change})"
