"""Payments tables: methods, deposits, withdrawals, their timeline, the webhook inbox, and
reconciliation runs with their exceptions queue. Only ``payments.services`` writes them."""

from __future__ import annotations

from django.db import models

from brokerdesk.core.ids import new_id


class PaymentMethod(models.Model):
    """A client's payment route at a provider (card, e-wallet, bank account)."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    client_id = models.UUIDField(db_index=True)
    provider = models.CharField(max_length=40)
    kind = models.CharField(max_length=20, default="card")
    token = models.CharField(max_length=200)  # the provider's token or masked account
    holder_name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["client_id", "provider", "token"], name="payments_method_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.kind}:{self.id}"


class Deposit(models.Model):
    """A deposit intent and what became of it (status per ``states.DEPOSIT_TRANSITIONS``)."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    request_key = models.CharField(max_length=200, unique=True)
    reference = models.CharField(max_length=64, unique=True)
    client_id = models.UUIDField(db_index=True)
    provider = models.CharField(max_length=40)
    method = models.ForeignKey(PaymentMethod, null=True, on_delete=models.PROTECT)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=5)
    fee = models.BigIntegerField(default=0)  # our fee to the client (fee_income)
    psp_fee = models.BigIntegerField(default=0)  # the provider's fee (from its event)
    status = models.CharField(max_length=20, db_index=True)
    provider_id = models.CharField(max_length=100, blank=True, db_index=True)
    pay_url = models.CharField(max_length=500, blank=True)
    hold_reason = models.CharField(max_length=200, blank=True)
    credit_transfer_id = models.UUIDField(null=True)  # clearing → pending
    fee_transfer_id = models.UUIDField(null=True)  # pending → fee income
    release_transfer_id = models.UUIDField(null=True)  # pending → cash
    # the wallet credited when it is not ``currency`` ("": the paid currency), what it got
    # (converted, after the FX fee) and the conversion (rate, its day, fee, transfer ids)
    wallet_currency = models.CharField(max_length=5, blank=True, default="")
    wallet_amount = models.BigIntegerField(default=0)
    fx = models.JSONField(default=dict, blank=True)
    created_by = models.CharField(max_length=100)
    created_at = models.DateTimeField()
    confirmed_at = models.DateTimeField(null=True)
    updated_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["client_id", "status", "confirmed_at"])]

    def __str__(self) -> str:
        return f"deposit {self.reference} {self.status}"


class Withdrawal(models.Model):
    """A withdrawal request and its way to the provider (``states.WITHDRAWAL_TRANSITIONS``)."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    request_key = models.CharField(max_length=200, unique=True)
    reference = models.CharField(max_length=64, unique=True)
    client_id = models.UUIDField(db_index=True)
    provider = models.CharField(max_length=40)
    method = models.ForeignKey(PaymentMethod, on_delete=models.PROTECT)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=5)
    psp_fee = models.BigIntegerField(default=0)
    status = models.CharField(max_length=20, db_index=True)
    provider_id = models.CharField(max_length=100, blank=True, db_index=True)
    requested_by = models.CharField(max_length=100)
    approved_by = models.CharField(max_length=100, blank=True)
    lock_transfer_id = models.UUIDField(null=True)  # cash → locked
    settle_transfer_id = models.UUIDField(null=True)  # locked → clearing (paid) or → cash
    return_transfer_id = models.UUIDField(null=True)  # clearing → cash (returned)
    # amount/currency are what the provider pays out; the wallet side when it differs
    # ("": the same), and the conversion fixed at request time (rate, its day, fee)
    wallet_currency = models.CharField(max_length=5, blank=True, default="")
    wallet_amount = models.BigIntegerField(default=0)
    fx = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"withdrawal {self.reference} {self.status}"


class PaymentEvent(models.Model):
    """One step on a deposit's or withdrawal's timeline (append-only)."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    payment_type = models.CharField(max_length=20)  # deposit | withdrawal
    payment_id = models.UUIDField(db_index=True)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20)
    actor = models.CharField(max_length=100)
    reason = models.CharField(max_length=300, blank=True)
    data = models.JSONField(default=dict)
    occurred_at = models.DateTimeField()

    class Meta:
        ordering = ["occurred_at", "id"]

    def __str__(self) -> str:
        return f"{self.payment_type} {self.from_status}→{self.to_status}"


class InboxEvent(models.Model):
    """A provider webhook event, recorded once (unique on provider + event id)."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    provider = models.CharField(max_length=40)
    event_id = models.CharField(max_length=200)
    kind = models.CharField(max_length=40)
    reference = models.CharField(max_length=64, blank=True)
    payload = models.JSONField(default=dict)
    received_at = models.DateTimeField()
    outcome = models.CharField(max_length=60, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "event_id"], name="payments_inbox_unique")
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.event_id}"


class ReconciliationRun(models.Model):
    """One import of a settlement file and its result."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    provider = models.CharField(max_length=40)
    source = models.CharField(max_length=300)
    file_sha256 = models.CharField(max_length=64)
    rows = models.IntegerField(default=0)
    matched = models.IntegerField(default=0)
    exceptions = models.IntegerField(default=0)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True)
    actor = models.CharField(max_length=100)

    def __str__(self) -> str:
        return f"reconciliation {self.source}"


class Settlement(models.Model):
    """A payment a PSP settlement file carried, recorded once (by the first run that matched
    it). Insert-only: marking a million payments settled writes a million narrow rows
    instead of updating a million wide, much-indexed payment rows."""

    payment_id = models.UUIDField(primary_key=True)  # a deposit's or a withdrawal's id
    payment_type = models.CharField(max_length=20)  # deposit | withdrawal
    batch = models.CharField(max_length=64)
    run_id = models.UUIDField(null=True)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.payment_type} {self.payment_id} in {self.batch}"


class SettlementLine(models.Model):
    """A settlement row counted toward its payment: a whole or partial settlement (with
    the PSP's fee and the reserve it withheld) or a reserve release. A row is counted once
    (unique per provider, row type, reference and PSP id), so a file read twice adds
    nothing; a payment's lines sum to its settled amount and reserves held minus released."""

    id = models.BigAutoField(primary_key=True)
    provider = models.CharField(max_length=40)
    row_type = models.CharField(max_length=20)
    reference = models.CharField(max_length=64)
    psp_id = models.CharField(max_length=100)
    payment_id = models.UUIDField()
    payment_type = models.CharField(max_length=20)
    currency = models.CharField(max_length=5)
    gross = models.BigIntegerField()
    fee = models.BigIntegerField()
    reserve = models.BigIntegerField()
    net = models.BigIntegerField()
    batch = models.CharField(max_length=64)
    run_id = models.UUIDField()
    line = models.BigIntegerField()
    settled_at = models.DateTimeField(null=True)
    reserve_due = models.DateField(null=True)
    payment_amount = models.BigIntegerField()
    payment_at = models.DateTimeField(null=True)
    partial = models.BooleanField()  # the payment was not fully settled after this row
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "row_type", "reference", "psp_id"],
                name="payments_stl_line_once",
            )
        ]
        indexes = [
            models.Index(
                fields=["provider", "reference"],
                name="payments_stl_line_partial",
                condition=models.Q(partial=True),
            ),
            models.Index(
                fields=["provider", "reference"],
                name="payments_stl_line_reserve",
                condition=models.Q(reserve__gt=0) | models.Q(row_type="reserve_release"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.row_type} {self.reference} {self.gross} line {self.line}"


class ReconciliationException(models.Model):
    """A settlement row (or payment) that did not match: new → in_review → resolved."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    run = models.ForeignKey(ReconciliationRun, null=True, on_delete=models.PROTECT)
    kind = models.CharField(max_length=40)
    reference = models.CharField(max_length=64, blank=True)
    detail = models.CharField(max_length=500)
    data = models.JSONField(default=dict)
    status = models.CharField(max_length=20, default="new", db_index=True)
    assigned_to = models.CharField(max_length=100, blank=True)
    resolution_note = models.TextField(blank=True)
    resolved_by = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.kind} {self.reference} {self.status}"


class FxRate(models.Model):
    """A reference rate: units of ``currency`` per one ``base`` on ``day`` (ECB: base EUR)."""

    id = models.BigAutoField(primary_key=True)
    source = models.CharField(max_length=20)
    day = models.DateField()
    base = models.CharField(max_length=5)
    currency = models.CharField(max_length=5)
    rate = models.DecimalField(max_digits=20, decimal_places=8)
    imported_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source", "day", "base", "currency"], name="payments_fxrate_unique"
            )
        ]
        indexes = [models.Index(fields=["source", "currency", "-day"])]

    def __str__(self) -> str:
        return f"{self.day} {self.base}/{self.currency} {self.rate}"


class WalletConversion(models.Model):
    """A client's conversion between two wallet currencies, keyed by its request id (the rate
    is fixed here at the first request, so a retry replays the same ledger chain)."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    request_key = models.CharField(max_length=200, unique=True)
    client_id = models.UUIDField(db_index=True)
    from_currency = models.CharField(max_length=5)
    to_currency = models.CharField(max_length=5)
    sell_amount = models.BigIntegerField()
    rate = models.DecimalField(max_digits=24, decimal_places=12)
    rate_day = models.DateField(null=True)
    fee_bps = models.IntegerField()
    bought = models.BigIntegerField(default=0)
    fee = models.BigIntegerField(default=0)
    actor = models.CharField(max_length=100)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.sell_amount} {self.from_currency}→{self.to_currency}"
