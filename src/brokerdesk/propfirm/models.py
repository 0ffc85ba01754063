"""Tables of propfirm (only :mod:`brokerdesk.propfirm.services` writes them).

* ``Product``: one *version* of a challenge product. Rows are never edited except their
  ``active`` flag: an edit writes the next version, so a challenge keeps the rules it was
  bought under (``Challenge.product`` points at that version).
* ``Challenge``: one purchase by one client, walking the product's phases.
* ``PhaseAccount``: the platform login of one phase of a challenge, with its status, the
  breach (rule and figures) and the freshest equity reading.
* ``PhaseDeal`` / ``PhaseDay``: the evaluation's inputs, keyed so that a re-delivered event
  changes nothing — closed deals unique per (account, ticket); per server day the realised
  P/L (a sum over the deal rows), and the lowest and highest equity readings (min/max).
* ``PhaseDealCorrection``: a dealer correction of a phase deal, with the re-evaluation's
  outcome and, when it contradicts a decision, the staff review flag.
* ``Payout``: a profit split of a funded account: the trader's share to the wallet, the
  firm's share recorded.

Money is integer minor units of the product's currency; rule thresholds are basis points of
the account size.
"""

from __future__ import annotations

from django.db import models

from brokerdesk.core.ids import new_id


class Product(models.Model):
    """One version of a challenge product: price, account size, phases and their rules.

    ``phases`` is a list of dicts (see :mod:`brokerdesk.propfirm.rules`): name, daily and
    overall loss limits, static or trailing overall loss, profit target, minimum trading days,
    time limit and consistency share, all integers. The last phase is the funded one.
    """

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    code = models.SlugField(max_length=64)
    version = models.PositiveIntegerField(default=1)
    name = models.CharField(max_length=200)
    active = models.BooleanField(default=True)
    price = models.BigIntegerField()
    currency = models.CharField(max_length=12)
    account_size = models.BigIntegerField()
    profit_split_bps = models.PositiveIntegerField(default=8000)
    server = models.CharField(max_length=64, default="sim")
    platform_group = models.CharField(max_length=128, default="demo\\standard")
    leverage = models.PositiveIntegerField(default=100)
    phases = models.JSONField(default=list)
    created_by = models.CharField(max_length=200, default="system")
    created_at = models.DateTimeField()

    class Meta:
        db_table = "propfirm_product"
        constraints = [
            models.UniqueConstraint(fields=["code", "version"], name="propfirm_product_version")
        ]

    def __str__(self) -> str:
        return f"{self.code} v{self.version}"


class ChallengeStatus(models.TextChoices):
    """Where a challenge stands (the phase accounts carry the details)."""

    ACTIVE = "active", "In evaluation"
    FUNDED = "funded", "Funded"
    FAILED = "failed", "Failed"


class Challenge(models.Model):
    """A purchase of one product version by one client."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    request_key = models.CharField(max_length=200, unique=True)
    client_id = models.CharField(max_length=100, db_index=True)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="challenges")
    price = models.BigIntegerField()
    currency = models.CharField(max_length=12)
    payment_transfer_id = models.UUIDField()
    status = models.CharField(
        max_length=16, choices=ChallengeStatus.choices, default=ChallengeStatus.ACTIVE
    )
    phase_index = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "propfirm_challenge"
        indexes = [models.Index(fields=["status", "created_at"], name="propfirm_challenge_status")]

    def __str__(self) -> str:
        return f"{self.product_id} for {self.client_id} ({self.status})"


class PhaseStatus(models.TextChoices):
    """States of one phase account (transitions: ``services.PHASE_TRANSITIONS``)."""

    PENDING = "pending", "Waiting for its platform account"
    OPENING = "opening", "Platform account being opened"
    ACTIVE = "active", "Trading"
    PASSED = "passed", "Passed"
    FAILED = "failed", "Failed"


class PhaseAccount(models.Model):
    """The platform login of one phase of a challenge and its evaluation state."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    challenge = models.ForeignKey(Challenge, on_delete=models.PROTECT, related_name="accounts")
    phase_index = models.PositiveSmallIntegerField()
    phase_name = models.CharField(max_length=64)
    funded = models.BooleanField(default=False)
    server = models.CharField(max_length=64)
    login = models.BigIntegerField(null=True, blank=True)
    account_size = models.BigIntegerField()
    status = models.CharField(
        max_length=16, choices=PhaseStatus.choices, default=PhaseStatus.PENDING
    )
    started_at = models.DateTimeField(null=True, blank=True)
    deadline = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    #: The rule that ended the phase (breach or pass) and its figures (integers, ms times).
    rule = models.CharField(max_length=32, blank=True, default="")
    figures = models.JSONField(default=dict, blank=True)
    decided_by = models.CharField(max_length=200, blank=True, default="")
    #: The platform still has to hear about the decision (trading off; next phase opened).
    platform_pending = models.BooleanField(default=False)
    last_equity = models.BigIntegerField(null=True, blank=True)
    last_balance = models.BigIntegerField(null=True, blank=True)
    last_reading_msc = models.BigIntegerField(default=0)
    paid_out = models.BigIntegerField(default=0)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "propfirm_phase_account"
        constraints = [
            models.UniqueConstraint(
                fields=["challenge", "phase_index"], name="propfirm_phase_once"
            ),
            models.UniqueConstraint(
                fields=["server", "login"],
                condition=models.Q(login__isnull=False),
                name="propfirm_phase_login",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "last_reading_msc"], name="propfirm_phase_status"),
        ]

    def __str__(self) -> str:
        return f"{self.phase_name} {self.server}:{self.login} ({self.status})"


class PhaseDeal(models.Model):
    """A closed deal of a phase account (realised P/L), stored once per ticket.

    A dealer correction rewrites ``pnl`` and ``version_msc`` (newest wins); a deleted deal (or
    one no longer a closing trade) stays as a row with ``deleted`` set and P/L 0, so a late
    ``trading.deal_closed`` of it is still a duplicate.
    """

    account = models.ForeignKey(PhaseAccount, on_delete=models.PROTECT, related_name="deals")
    deal = models.BigIntegerField()
    time_msc = models.BigIntegerField()
    day = models.DateField()
    pnl = models.BigIntegerField()
    version_msc = models.BigIntegerField(default=0)  # 0: as trading.deal_closed reported it
    deleted = models.BooleanField(default=False)

    class Meta:
        db_table = "propfirm_phase_deal"
        constraints = [
            models.UniqueConstraint(fields=["account", "deal"], name="propfirm_deal_once")
        ]

    def __str__(self) -> str:
        return f"#{self.deal} {self.pnl}"


class PhaseDay(models.Model):
    """One server day of a phase account: realised P/L, trades, lowest and highest equity."""

    account = models.ForeignKey(PhaseAccount, on_delete=models.PROTECT, related_name="days")
    day = models.DateField()
    pnl = models.BigIntegerField(default=0)
    trades = models.IntegerField(default=0)
    min_equity = models.BigIntegerField(null=True, blank=True)
    min_equity_msc = models.BigIntegerField(default=0)
    max_equity = models.BigIntegerField(null=True, blank=True)
    max_equity_msc = models.BigIntegerField(default=0)
    paid_out = models.BigIntegerField(default=0)

    class Meta:
        db_table = "propfirm_phase_day"
        constraints = [models.UniqueConstraint(fields=["account", "day"], name="propfirm_day_once")]

    def __str__(self) -> str:
        return f"{self.day} {self.pnl}"


class PhaseDealCorrection(models.Model):
    """A dealer correction of a challenge login's deal and what the re-evaluation made of it.

    One row per (account, deal, version): a redelivered correction changes nothing. ``review``
    marks a correction that contradicts a decision already taken (a breach the corrected
    figures no longer show, a pass they no longer support) or that failed the phase: staff
    look at it; nothing is undone automatically.
    """

    account = models.ForeignKey(PhaseAccount, on_delete=models.PROTECT, related_name="corrections")
    deal = models.BigIntegerField()
    version_msc = models.BigIntegerField()
    change = models.CharField(max_length=10)  # update | delete
    pnl_before = models.BigIntegerField(null=True, blank=True)  # None: not counted before
    pnl_after = models.BigIntegerField(null=True, blank=True)  # None: no longer counted
    status = models.CharField(max_length=16)  # the phase's status when it was applied
    outcome = models.CharField(max_length=32)
    verdict = models.JSONField(default=dict, blank=True)  # the corrected verdict
    review = models.BooleanField(default=False)
    reviewed_by = models.CharField(max_length=200, blank=True, default="")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.TextField(blank=True, default="")
    at = models.DateTimeField()

    class Meta:
        db_table = "propfirm_deal_correction"
        constraints = [
            models.UniqueConstraint(
                fields=["account", "deal", "version_msc"], name="propfirm_correction_once"
            )
        ]
        indexes = [models.Index(fields=["review", "at"], name="propfirm_correction_review")]

    def __str__(self) -> str:
        return f"#{self.deal} v{self.version_msc} {self.outcome}"


class PayoutState(models.TextChoices):
    """States of a profit-split payout."""

    REQUESTED = "requested", "Requested"
    PLATFORM_DONE = "platform_done", "Profit taken off the platform account"
    PAID = "paid", "Trader's share in the wallet"
    FAILED = "failed", "Failed"


class Payout(models.Model):
    """A profit split of a funded account."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    request_key = models.CharField(max_length=200, unique=True)
    account = models.ForeignKey(PhaseAccount, on_delete=models.PROTECT, related_name="payouts")
    client_id = models.CharField(max_length=100, db_index=True)
    currency = models.CharField(max_length=12)
    profit = models.BigIntegerField()
    trader_share = models.BigIntegerField()
    firm_share = models.BigIntegerField()
    split_bps = models.PositiveIntegerField()
    state = models.CharField(
        max_length=16, choices=PayoutState.choices, default=PayoutState.REQUESTED
    )
    comment = models.CharField(max_length=31)
    platform_ticket = models.BigIntegerField(null=True, blank=True)
    ledger_transfer_id = models.UUIDField(null=True, blank=True)
    withdrawal_id = models.UUIDField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    actor = models.CharField(max_length=200, default="system")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "propfirm_payout"

    def __str__(self) -> str:
        return f"{self.profit} {self.currency} ({self.state})"
