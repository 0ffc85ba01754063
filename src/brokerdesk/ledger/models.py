"""ledger tables: accounts with running balances, transfers and their entries.

Rows of ``Transfer`` and ``Entry`` are never updated or deleted (database triggers refuse it);
a pending transfer is resolved by a second transfer that names it (``pending``), and a mistake
by a reversal that names the original (``reverses``). Balances on ``LedgerAccount`` are kept
in the same transaction as the entries and can be rebuilt from them (``replay-ledger``).

Sign convention: an account's balance is credits minus debits. A client wallet (money the
broker owes) is credited by a deposit; the PSP clearing account (money the PSP owes the broker)
is debited and so runs negative.
"""

from __future__ import annotations

from django.db import models

from brokerdesk.core.ids import new_id


class Bucket(models.TextChoices):
    """What a balance is for; one account per (owner, currency, bucket)."""

    CASH = "cash", "Cash"
    BONUS = "bonus", "Bonus"
    LOCKED = "locked", "Locked"
    PENDING = "pending", "Pending"
    PAYABLE = "payable", "Payable"
    CLEARING = "clearing", "Clearing"
    INCOME = "income", "Income"
    EXPENSE = "expense", "Expense"
    FX = "fx", "FX"
    SUSPENSE = "suspense", "Suspense"


class OwnerType(models.TextChoices):
    """Whose account it is."""

    CLIENT = "client", "Client"
    IB = "ib", "Introducing broker"
    TRADING_ACCOUNT = "trading_account", "Trading account"
    SYSTEM = "system", "System"


class LedgerAccount(models.Model):
    """A balance of one owner in one currency and bucket, with TigerBeetle-style counters."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    owner_type = models.CharField(max_length=20, choices=OwnerType.choices)
    owner_id = models.CharField(max_length=100)
    currency = models.CharField(max_length=12)
    bucket = models.CharField(max_length=20, choices=Bucket.choices)
    name = models.CharField(max_length=200, blank=True, default="")
    no_negative = models.BooleanField(
        default=False, help_text="Debits may not exceed credits (the balance may not go below 0)."
    )
    no_positive = models.BooleanField(
        default=False, help_text="Credits may not exceed debits (the balance may not go above 0)."
    )
    debits_posted = models.BigIntegerField(default=0)
    credits_posted = models.BigIntegerField(default=0)
    debits_pending = models.BigIntegerField(default=0)
    credits_pending = models.BigIntegerField(default=0)
    entry_count = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default="0" * 64)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["owner_type", "owner_id", "currency", "bucket"],
                name="ledger_account_owner_currency_bucket_uniq",
            ),
            models.CheckConstraint(
                condition=~(models.Q(no_negative=True) & models.Q(no_positive=True)),
                name="ledger_account_flags_exclusive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.owner_type}:{self.owner_id} {self.currency} {self.bucket}"

    @property
    def balance(self) -> int:
        """Posted balance: credits minus debits."""
        return self.credits_posted - self.debits_posted

    @property
    def available(self) -> int:
        """What can still be debited: the posted balance less outgoing pending amounts."""
        return self.credits_posted - self.debits_posted - self.debits_pending


class Phase(models.TextChoices):
    """What a transfer does."""

    POSTED = "posted", "Posted"
    PENDING = "pending", "Pending (reserves)"
    POST_PENDING = "post_pending", "Posts a pending transfer"
    VOID_PENDING = "void_pending", "Voids a pending transfer"
    EXPIRE_PENDING = "expire_pending", "Expires a pending transfer"


class Transfer(models.Model):
    """An immutable, balanced movement of money in one currency, keyed for idempotency."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    idempotency_key = models.CharField(max_length=200, unique=True)
    request_hash = models.CharField(max_length=64)
    kind = models.CharField(max_length=50)
    currency = models.CharField(max_length=12)
    amount = models.BigIntegerField(help_text="Sum of the debit legs, in minor units.")
    phase = models.CharField(max_length=20, choices=Phase.choices)
    pending = models.OneToOneField(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="resolution",
        help_text="The pending transfer this one posts, voids or expires (once only).",
    )
    reverses = models.OneToOneField(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="reversal",
        help_text="The transfer this one compensates (once only).",
    )
    linked_id = models.UUIDField(
        null=True, blank=True, help_text="Transfers sharing this id succeeded together."
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    actor = models.CharField(max_length=200, default="system")
    reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(
                fields=["expires_at"],
                name="ledger_transfer_open_pending",
                condition=models.Q(phase="pending"),
            ),
            models.Index(fields=["linked_id"], name="ledger_transfer_linked"),
            models.Index(fields=["kind", "created_at"], name="ledger_transfer_kind_time"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} {self.currency} ({self.phase})"


class Side(models.TextChoices):
    """Debit or credit."""

    DEBIT = "D", "Debit"
    CREDIT = "C", "Credit"


class Entry(models.Model):
    """One leg of a transfer on one account (positive amount, debit or credit).

    Posted entries carry the account's balance after them (balance as of any time is one
    lookup) and a hash chained per account (tamper evidence). On PostgreSQL the table is
    partitioned by month of ``created_at``.
    """

    id = models.BigAutoField(primary_key=True)
    transfer = models.ForeignKey(Transfer, on_delete=models.PROTECT, related_name="entries")
    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="entries")
    side = models.CharField(max_length=1, choices=Side.choices)
    amount = models.BigIntegerField()
    is_pending = models.BooleanField(default=False)
    balance_after = models.BigIntegerField(null=True, blank=True)
    hash = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["account", "-created_at", "-id"], name="ledger_entry_acct_time"),
        ]
        verbose_name_plural = "entries"

    def __str__(self) -> str:
        return f"{self.side} {self.amount} on {self.account_id}"
