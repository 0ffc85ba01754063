"""Partners tables; only ``brokerdesk.partners`` services write them.

* ``IB`` and ``IBClosure``: the hierarchy as a closure table (every ancestor → descendant
  pair with its distance, including each IB to itself at depth 0).
* ``ReferralLink``, ``Attribution``, ``Reassignment``, ``ClientFunding``: who referred whom.
* ``Plan``, ``PlanVersion``, ``PlanAssignment``: commission plans as versioned data.
* ``DealRecord``, ``Accrual``, ``Exclusion``, ``Payout``: the accrual engine and its evidence.
* ``IBDailyActivity``, ``IBPeriodVolume``, ``ClientVolume``: read models and counters kept by
  the accrual consumer.

The engine's high-volume rows (``DealRecord``, ``Accrual``, ``Exclusion``: several per closed
deal; ``IBDailyActivity`` and ``IBPeriodVolume``, upserted per batch) point to their IB, deal,
plan version, payout and adjusted accrual without a database foreign-key constraint: a
deferred constraint queues a check per row and reference, run at commit (about 17 µs an
accrual with a lookup, about 1 µs for a reference left empty, measured), and the rows are
written only by this module, in the transaction that reads (IB, version, accrual) or writes
(deal, payout) what they point to; IBs, versions, deal records, payouts and accruals are never
deleted (``PROTECT`` and ``CASCADE`` still hold in the ORM). ``queries.orphan_rows`` counts any
dangling reference (0; the benchmark reports it). Idempotency stays with the unique keys.
"""

from __future__ import annotations

from django.db import models

from brokerdesk.core.ids import new_id


class IBStatus(models.TextChoices):
    """Whether an IB earns commission."""

    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"


class IB(models.Model):
    """An introducing broker (partner); ``parent`` is its master IB (none for a top IB)."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    code = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=200)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    depth = models.PositiveIntegerField(default=0)  # 0 for a top-level IB
    status = models.CharField(max_length=12, choices=IBStatus.choices, default=IBStatus.ACTIVE)
    currency = models.CharField(max_length=12, default="USD")
    client_id = models.UUIDField(null=True, blank=True)  # the IB's own client record, if any
    user_id = models.IntegerField(null=True, blank=True)  # portal login
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["parent"], name="partners_ib_parent")]

    def __str__(self) -> str:
        return self.code


class IBClosure(models.Model):
    """One (ancestor, descendant, depth) pair of the hierarchy."""

    ancestor = models.ForeignKey(IB, on_delete=models.CASCADE, related_name="+")
    descendant = models.ForeignKey(IB, on_delete=models.CASCADE, related_name="+")
    depth = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["ancestor", "descendant"], name="partners_closure_pair")
        ]
        indexes = [
            models.Index(fields=["ancestor", "depth"], name="partners_closure_anc"),
            models.Index(fields=["descendant", "depth"], name="partners_closure_desc"),
        ]

    def __str__(self) -> str:
        return f"{type(self).__name__} {self.pk}"


class LinkKind(models.TextChoices):
    """A referral link (URL carrying the code) or a promo code typed at registration."""

    LINK = "link", "Referral link"
    PROMO = "promo", "Promo code"


class ReferralLink(models.Model):
    """A referral link or promo code of one IB."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    ib = models.ForeignKey(IB, on_delete=models.PROTECT, related_name="links")
    kind = models.CharField(max_length=8, choices=LinkKind.choices)
    code = models.CharField(max_length=60, unique=True)
    campaign = models.CharField(max_length=100, blank=True, default="")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{type(self).__name__} {self.pk}"


class AttributionSource(models.TextChoices):
    """How a client came to be attributed."""

    LINK = "link", "Referral link"
    PROMO = "promo", "Promo code"
    MANUAL = "manual", "Manual assignment"


class Attribution(models.Model):
    """The IB a client belongs to: first touch, locked at registration; changed only by a
    reassignment (``Reassignment``)."""

    client_id = models.UUIDField(primary_key=True)
    ib = models.ForeignKey(IB, on_delete=models.PROTECT, related_name="attributions")
    source = models.CharField(max_length=8, choices=AttributionSource.choices)
    link = models.ForeignKey(ReferralLink, null=True, blank=True, on_delete=models.PROTECT)
    touched_at = models.DateTimeField()  # first touch (the click), or the assignment
    attributed_at = models.DateTimeField()
    client_label = models.CharField(max_length=120, blank=True, default="")  # privacy-limited
    country = models.CharField(max_length=2, blank=True, default="")
    updated_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["ib", "attributed_at"], name="partners_attr_ib")]

    def __str__(self) -> str:
        return f"{type(self).__name__} {self.pk}"


class ReassignmentState(models.TextChoices):
    """A reassignment is applied at once, or waits for a second approver."""

    PENDING = "pending", "Waiting for a second approver"
    APPLIED = "applied", "Applied"
    REJECTED = "rejected", "Rejected"


class Reassignment(models.Model):
    """A request to (re)assign a client to an IB, with reason, requester and approver."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    client_id = models.UUIDField()
    from_ib = models.ForeignKey(
        IB, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    to_ib = models.ForeignKey(IB, on_delete=models.PROTECT, related_name="+")
    reason = models.TextField()
    state = models.CharField(max_length=10, choices=ReassignmentState.choices)
    funded = models.BooleanField(default=False)
    requested_by = models.CharField(max_length=200)
    requested_at = models.DateTimeField()
    decided_by = models.CharField(max_length=200, blank=True, default="")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["client_id", "requested_at"], name="partners_reas_cl")]

    def __str__(self) -> str:
        return f"{type(self).__name__} {self.pk}"


class ClientFunding(models.Model):
    """A client's first deposit (makes the client "funded"; basis of CPA)."""

    client_id = models.UUIDField(primary_key=True)
    first_amount = models.BigIntegerField()
    currency = models.CharField(max_length=12)
    reference = models.CharField(max_length=200)
    funded_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{type(self).__name__} {self.pk}"


class Plan(models.Model):
    """A commission plan; its rules live in versions."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    code = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=200)
    currency = models.CharField(max_length=12)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{type(self).__name__} {self.pk}"


class PlanVersion(models.Model):
    """One immutable version of a plan's rules, valid from ``valid_from`` until the next."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    valid_from = models.DateTimeField()
    rules = models.JSONField()
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField()
    reason = models.TextField(blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["plan", "number"], name="partners_planver_number"),
            models.UniqueConstraint(fields=["plan", "valid_from"], name="partners_planver_from"),
        ]

    def __str__(self) -> str:
        return f"{type(self).__name__} {self.pk}"


class PlanAssignment(models.Model):
    """From ``valid_from`` on, the IB's clients' deals are commissioned under ``plan``."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    ib = models.ForeignKey(IB, on_delete=models.PROTECT, related_name="plan_assignments")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    valid_from = models.DateTimeField()
    assigned_by = models.CharField(max_length=200)
    reason = models.TextField(blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["ib", "valid_from"], name="partners_plan_assign")
        ]

    def __str__(self) -> str:
        return f"{type(self).__name__} {self.pk}"


class DealRecord(models.Model):
    """A closed deal as the accrual engine saw it (once per deal key), kept as evidence."""

    key = models.CharField(max_length=120, primary_key=True)  # "server:deal"
    server = models.CharField(max_length=100)
    login = models.BigIntegerField()
    deal = models.BigIntegerField()
    client_id = models.UUIDField(null=True, blank=True)
    ib = models.ForeignKey(
        IB,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    closed_at = models.DateTimeField()
    symbol = models.CharField(max_length=64)
    volume = models.BigIntegerField()  # MT5 units: 1/10,000 lot
    profit = models.BigIntegerField(default=0)
    commission = models.BigIntegerField(default=0)
    swap = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=12, blank=True, default="")
    group = models.CharField(max_length=120, blank=True, default="")
    position_id = models.BigIntegerField(default=0)
    opened_at = models.DateTimeField(null=True, blank=True)
    payload = models.JSONField(default=dict)  # the deal's other fields (fee, spread, bonus …)
    processed_at = models.DateTimeField()
    # the direct IB's tier-period volume before this deal (the tier the pool was paid at)
    tier_volume = models.BigIntegerField(null=True, blank=True)

    class Meta:
        # read by key and by client (evidence, the clients' read model); an IB's deals are
        # read through its accruals and exclusions, which name the deal
        indexes = [models.Index(fields=["client_id", "closed_at"], name="partners_deal_client")]

    def __str__(self) -> str:
        return f"{type(self).__name__} {self.pk}"


class AccrualState(models.TextChoices):
    """The commission state machine (see ``accrual.TRANSITIONS``)."""

    ACCRUED = "accrued", "Accrued"
    APPROVED = "approved", "Approved"
    PAYABLE = "payable", "Payable"
    PAID = "paid", "Paid"
    CANCELLED = "cancelled", "Cancelled"


class AccrualKind(models.TextChoices):
    """What produced an accrual."""

    DEAL = "deal", "Closed deal"
    CPA = "cpa", "CPA"
    ADJUSTMENT = "adjustment", "Manual adjustment"
    CORRECTION = "correction", "Dealer correction"


class Accrual(models.Model):
    """A commission amount owed to one IB, traceable to its deal (or client for CPA), plan
    version, level and computation; posted to the ledger (expense → IB payable).

    A plan's holdback is first carried by the share's main accrual (``held``, not payable,
    until ``release_at``); when it is released (``release_holdbacks``), or when anything must
    treat it apart (a dealer correction), it moves to a ``holdback`` accrual of its own with
    the same keys. What a share earned is always ``amount + held``.
    """

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    source_key = models.CharField(max_length=120)  # deal key, "cpa:<client>" or "adj:<id>"
    kind = models.CharField(max_length=12, choices=AccrualKind.choices)
    part = models.CharField(max_length=10, default="main")  # main | holdback
    ib = models.ForeignKey(
        IB, on_delete=models.PROTECT, related_name="accruals", db_index=False, db_constraint=False
    )  # indexed by (ib, occurred_at)
    level = models.PositiveIntegerField(default=0)  # 0: own client; k: k levels below
    deal = models.ForeignKey(
        DealRecord,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="accruals",
        db_index=False,  # a deal's accruals are found by source_key (the unique key's head)
        db_constraint=False,
    )
    client_id = models.UUIDField(null=True, blank=True)
    plan_version = models.ForeignKey(
        PlanVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    currency = models.CharField(max_length=12)
    amount = models.BigIntegerField()  # minor units; negative only for adjustments
    held = models.BigIntegerField(default=0)  # holdback not yet moved to its own accrual
    remainder_ppm = models.BigIntegerField(default=0)  # rounded-down fraction, 1e-6 minor unit
    volume = models.BigIntegerField(default=0)
    # the working behind the amount; empty for a deal accrual, whose working is derived from
    # its deal, plan version and level (``accrual.working``)
    computation = models.JSONField(default=dict)
    state = models.CharField(
        max_length=10, choices=AccrualState.choices, default=AccrualState.ACCRUED
    )
    # a holdback part: not payable before; a main part that holds ``held``: when it moves
    release_at = models.DateTimeField(null=True, blank=True)
    occurred_at = models.DateTimeField()  # the deal's close time (or the event's)
    accrued_at = models.DateTimeField()
    state_changed_at = models.DateTimeField()
    ledger_transfer_id = models.UUIDField(null=True, blank=True)  # the batch's transfer
    payout = models.ForeignKey(
        "Payout",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="accruals",
        db_index=False,
        db_constraint=False,
    )
    adjusts = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="adjustments",
        db_index=False,
        db_constraint=False,
    )
    reason = models.TextField(blank=True, default="")
    actor = models.CharField(max_length=200, default="system")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source_key", "ib", "plan_version", "level", "part"],
                name="partners_accrual_once",
            )
        ]
        indexes = [
            # three indexes take every new row: the key, the unique key and (ib, time); the
            # others hold only the rows they are for (a client's accruals are read per IB)
            models.Index(fields=["ib", "occurred_at"], name="partners_accr_ib_time"),
            models.Index(
                fields=["ib", "state"],
                name="partners_accr_ib_decided",
                condition=~models.Q(state="accrued"),
            ),
            models.Index(
                fields=["payout"],
                name="partners_accr_payout",
                condition=models.Q(payout__isnull=False),
            ),
            models.Index(
                fields=["adjusts"],
                name="partners_accr_adjusts",
                condition=models.Q(adjusts__isnull=False),
            ),
            # holdbacks waiting for their release (rows leave it when their held part moves)
            models.Index(
                fields=["release_at"],
                name="partners_accr_held",
                condition=models.Q(held__gt=0) & ~models.Q(state="cancelled"),
            ),
            # dealer corrections by when they were booked (the statement of that period)
            models.Index(
                fields=["ib", "accrued_at"],
                name="partners_accr_corrected",
                condition=models.Q(kind="correction"),
            ),
        ]

    def __str__(self) -> str:
        return f"{type(self).__name__} {self.pk}"


class DealCorrection(models.Model):
    """One dealer correction (``trading.deal_corrected``) of a deal as the engine applied it:
    once per (deal key, ``version_msc``), with the deal before and after, what it changed per
    (IB, level, part) and whether staff should review it (``review``: e.g. a CPA paid on
    volume the correction took away)."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    deal_key = models.CharField(max_length=120)  # "server:deal" (DealRecord key)
    version_msc = models.BigIntegerField()
    change = models.CharField(max_length=10)  # update | delete
    before = models.JSONField(default=dict)
    after = models.JSONField(null=True, blank=True)
    outcome = models.CharField(max_length=40)  # rebooked, unchanged, accrued_new, …
    # the deal's state after it (volume, counted) and per (IB, level, part): old, new, booked
    working = models.JSONField(default=dict)
    review = models.TextField(blank=True, default="")  # why staff should look at it
    applied_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["deal_key", "version_msc"], name="partners_correction_once"
            )
        ]
        indexes = [
            models.Index(
                fields=["applied_at"],
                name="partners_corr_review",
                condition=~models.Q(review=""),
            )
        ]

    def __str__(self) -> str:
        return f"{type(self).__name__} {self.pk}"


class Exclusion(models.Model):
    """A deal (or CPA) that earned an IB nothing, and the rule that excluded it."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    source_key = models.CharField(max_length=120)
    deal = models.ForeignKey(
        DealRecord,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="exclusions",
        db_index=False,  # found by source_key (the unique key's head)
        db_constraint=False,
    )
    ib = models.ForeignKey(
        IB, on_delete=models.PROTECT, related_name="exclusions", db_index=False, db_constraint=False
    )  # indexed by (ib, occurred_at)
    level = models.PositiveIntegerField(default=0)
    client_id = models.UUIDField(null=True, blank=True)
    plan_version = models.ForeignKey(
        PlanVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    rule = models.CharField(max_length=60)
    detail = models.TextField(blank=True, default="")
    occurred_at = models.DateTimeField()
    recorded_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source_key", "ib", "level", "rule"], name="partners_exclusion_once"
            )
        ]
        indexes = [models.Index(fields=["ib", "occurred_at"], name="partners_excl_ib_time")]

    def __str__(self) -> str:
        return f"{type(self).__name__} {self.pk}"


class Payout(models.Model):
    """Payable accruals of one IB moved to its wallet (IB payable → IB cash)."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    ib = models.ForeignKey(IB, on_delete=models.PROTECT, related_name="payouts")
    currency = models.CharField(max_length=12)
    amount = models.BigIntegerField()
    request_key = models.CharField(max_length=200, unique=True)
    ledger_transfer_id = models.UUIDField(null=True, blank=True)
    paid_by = models.CharField(max_length=200)
    paid_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{type(self).__name__} {self.pk}"


class IBDailyActivity(models.Model):
    """Read model: per IB, day, level and currency — deals, volume and commission earned."""

    ib = models.ForeignKey(
        IB, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    day = models.DateField()
    level = models.PositiveIntegerField()
    currency = models.CharField(max_length=12)
    deals = models.BigIntegerField(default=0)
    volume = models.BigIntegerField(default=0)
    earned = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["ib", "day", "level", "currency"], name="partners_daily_key"
            )
        ]

    def __str__(self) -> str:
        return f"{type(self).__name__} {self.pk}"


class IBPeriodVolume(models.Model):
    """Counter: an IB's own clients' volume in a tier period (month), for tiered rates."""

    ib = models.ForeignKey(
        IB, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    period = models.DateField()  # first day of the period
    volume = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["ib", "period"], name="partners_period_vol_key")
        ]

    def __str__(self) -> str:
        return f"{type(self).__name__} {self.pk}"


class ClientVolume(models.Model):
    """Counter: a client's total commissionable volume (for volume-qualified CPA)."""

    client_id = models.UUIDField(primary_key=True)
    volume = models.BigIntegerField(default=0)
    deals = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{type(self).__name__} {self.pk}"
