"""Trading tables: bridge checkpoints, trading accounts, deals, positions, the account summary
read model, wallet↔trading transfers and ledger↔platform reconciliation.

Only :mod:`brokerdesk.trading.services`, :mod:`.ingest`, :mod:`.transfers` and
:mod:`.reconciliation` write them. Money is integer minor units of the account currency.
"""

from __future__ import annotations

from django.db import models

from brokerdesk.core.ids import new_id


class BridgeCheckpoint(models.Model):
    """The newest deal ticket (and its time) a bridge has published for one platform server."""

    server = models.CharField(max_length=64, primary_key=True)
    last_ticket = models.BigIntegerField(default=0)
    last_time_msc = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "trading_bridge_checkpoint"

    def __str__(self) -> str:
        return f"{self.server}@{self.last_ticket}"


class TradingAccount(models.Model):
    """One platform login (server, login) owned by one client: a trading account."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    server = models.CharField(max_length=64)
    login = models.BigIntegerField()
    client_id = models.CharField(max_length=100, db_index=True)
    currency = models.CharField(max_length=12)
    currency_digits = models.PositiveSmallIntegerField(default=2)
    group = models.CharField(max_length=128)
    leverage = models.PositiveIntegerField()
    is_live = models.BooleanField(default=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "trading_account"
        constraints = [
            models.UniqueConstraint(fields=["server", "login"], name="trading_account_server_login")
        ]

    def __str__(self) -> str:
        return f"{self.server}:{self.login}"


class TradingDeal(models.Model):
    """One platform deal (``IMTDeal``), stored once per (server, ticket).

    On PostgreSQL the table is partitioned by month of ``time`` and its key is
    (server, deal, time): a deal's time is fixed when it is executed, so the key is unique per
    (server, deal). Elsewhere it is a plain table with the same key.
    """

    pk = models.CompositePrimaryKey("server", "deal", "time")
    server = models.CharField(max_length=64)
    deal = models.BigIntegerField()
    time = models.DateTimeField()
    time_msc = models.BigIntegerField()
    login = models.BigIntegerField()
    action = models.SmallIntegerField()
    entry = models.SmallIntegerField()
    reason = models.SmallIntegerField(default=0)
    order = models.BigIntegerField(default=0)
    position_id = models.BigIntegerField(default=0)
    symbol = models.CharField(max_length=32, blank=True, default="")
    volume = models.BigIntegerField(default=0)
    volume_ext = models.BigIntegerField(default=0)
    volume_closed = models.BigIntegerField(default=0)
    volume_closed_ext = models.BigIntegerField(default=0)
    price = models.BigIntegerField(default=0)
    digits = models.SmallIntegerField(default=0)
    contract_size = models.BigIntegerField(default=0)
    currency_digits = models.SmallIntegerField(default=2)
    profit = models.BigIntegerField(default=0)
    commission = models.BigIntegerField(default=0)
    storage = models.BigIntegerField(default=0)
    fee = models.BigIntegerField(default=0)
    comment = models.CharField(max_length=64, blank=True, default="")
    external_id = models.CharField(max_length=64, blank=True, default="")
    #: Wall-clock milliseconds when the consumer stored it (ingest lag = this - time_msc).
    ingested_msc = models.BigIntegerField(default=0)

    class Meta:
        db_table = "trading_deal"
        indexes = [
            models.Index(fields=["server", "login", "-time"], name="trading_deal_login_time"),
        ]

    def __str__(self) -> str:
        return f"{self.server}#{self.deal}"


class TradingPosition(models.Model):
    """An open (or, once deleted on the platform, closed) position, newest state wins."""

    server = models.CharField(max_length=64)
    position = models.BigIntegerField()
    login = models.BigIntegerField()
    symbol = models.CharField(max_length=32)
    action = models.SmallIntegerField()
    volume = models.BigIntegerField()
    price_open = models.BigIntegerField()
    price_current = models.BigIntegerField()
    digits = models.SmallIntegerField(default=0)
    contract_size = models.BigIntegerField(default=0)
    profit = models.BigIntegerField(default=0)
    storage = models.BigIntegerField(default=0)
    currency_digits = models.SmallIntegerField(default=2)
    time_create_msc = models.BigIntegerField(default=0)
    time_update_msc = models.BigIntegerField(default=0)
    closed = models.BooleanField(default=False)

    class Meta:
        db_table = "trading_position"
        constraints = [
            models.UniqueConstraint(
                fields=["server", "position"], name="trading_position_server_position"
            )
        ]
        indexes = [
            models.Index(
                fields=["server", "login"],
                condition=models.Q(closed=False),
                name="trading_position_open",
            )
        ]

    def __str__(self) -> str:
        return f"{self.server}:{self.position}"


class AccountSummary(models.Model):
    """Read model: one flat row per (server, login) for screens (balance, equity, …).

    ``balance`` and ``credit`` are sums over the stored deals (each deal applied once, in any
    order); ``open_pl`` is the floating profit plus swaps of the open positions; ``equity`` =
    balance + credit + open_pl; margin figures come from account snapshots, newest wins.
    """

    server = models.CharField(max_length=64)
    login = models.BigIntegerField()
    currency_digits = models.SmallIntegerField(default=2)
    balance = models.BigIntegerField(default=0)
    credit = models.BigIntegerField(default=0)
    open_pl = models.BigIntegerField(default=0)
    equity = models.BigIntegerField(default=0)
    margin = models.BigIntegerField(default=0)
    margin_free = models.BigIntegerField(default=0)
    margin_level = models.BigIntegerField(default=0)  # hundredths of a percent
    deals = models.BigIntegerField(default=0)
    last_deal_ticket = models.BigIntegerField(default=0)
    last_deal_time_msc = models.BigIntegerField(default=0)
    state_time_msc = models.BigIntegerField(default=0)  # time of the newest snapshot applied
    updated_msc = models.BigIntegerField(default=0)  # freshness: last time this row changed

    class Meta:
        db_table = "trading_account_summary"
        constraints = [
            models.UniqueConstraint(fields=["server", "login"], name="trading_summary_server_login")
        ]

    def __str__(self) -> str:
        return f"{self.server}:{self.login}"


class TradingDealCorrection(models.Model):
    """A dealer's corrections of one stored deal (MT5 ``DealUpdate`` / ``DealDelete``).

    The deal's row in ``trading_deal`` always holds its newest state; this row keeps the
    order (``version_msc``: the time of the newest correction applied, so an older one that
    arrives late changes nothing), whether the deal was deleted on the platform (the row in
    ``trading_deal`` stays, as history, and no longer counts) and every change, before and after.
    Written only by :mod:`brokerdesk.trading.corrections`.
    """

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    server = models.CharField(max_length=64)
    deal = models.BigIntegerField()
    login = models.BigIntegerField()
    version_msc = models.BigIntegerField(default=0)
    deleted = models.BooleanField(default=False)
    revisions = models.IntegerField(default=0)
    #: [{"change": "update"|"delete", "version_msc": …, "before": {…}|None, "after": {…}|None}]
    history = models.JSONField(default=list)
    updated_msc = models.BigIntegerField(default=0)

    class Meta:
        db_table = "trading_deal_correction"
        constraints = [
            models.UniqueConstraint(
                fields=["server", "deal"], name="trading_deal_correction_server_deal"
            )
        ]
        indexes = [
            models.Index(
                fields=["server", "login"],
                condition=models.Q(deleted=True),
                name="trading_deal_deleted",
            )
        ]

    def __str__(self) -> str:
        return f"{self.server}#{self.deal} v{self.version_msc}"


class TransferDirection(models.TextChoices):
    """Which way money goes."""

    TO_TRADING = "to_trading", "Wallet → trading account"
    TO_WALLET = "to_wallet", "Trading account → wallet"


class TransferState(models.TextChoices):
    """States of the wallet↔trading saga (transitions: ``transfers.TRANSITIONS``)."""

    NEW = "new", "New"
    RESERVED = "reserved", "Reserved in the wallet"
    PLATFORM_SENT = "platform_sent", "Sent to the platform (answer not yet known)"
    PLATFORM_DONE = "platform_done", "Confirmed by the platform"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed, money back"
    NEEDS_ATTENTION = "needs_attention", "Needs an operator"


class TradingTransfer(models.Model):
    """One wallet↔trading transfer and where its saga stands."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    request_key = models.CharField(max_length=200, unique=True)
    direction = models.CharField(max_length=16, choices=TransferDirection.choices)
    account = models.ForeignKey(TradingAccount, on_delete=models.PROTECT, related_name="transfers")
    client_id = models.CharField(max_length=100)
    currency = models.CharField(max_length=12)
    amount = models.BigIntegerField()
    comment = models.CharField(max_length=31)
    state = models.CharField(max_length=20, choices=TransferState.choices)
    ledger_pending_id = models.UUIDField(null=True, blank=True)
    ledger_posted_id = models.UUIDField(null=True, blank=True)
    platform_ticket = models.BigIntegerField(null=True, blank=True)
    reserve_expires_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    actor = models.CharField(max_length=200, default="system")
    history = models.JSONField(default=list)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "trading_transfer"
        indexes = [models.Index(fields=["state", "updated_at"], name="trading_transfer_state")]

    def __str__(self) -> str:
        return f"{self.direction} {self.amount} {self.currency} ({self.state})"


class ReconciliationRun(models.Model):
    """One comparison of a server's platform-clearing ledger entries with its balance deals."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    server = models.CharField(max_length=64)
    currency = models.CharField(max_length=12)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    ledger_count = models.IntegerField(default=0)
    platform_count = models.IntegerField(default=0)
    matched = models.IntegerField(default=0)
    exceptions = models.IntegerField(default=0)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "trading_reconciliation_run"

    def __str__(self) -> str:
        return f"{self.server} {self.period_start:%Y-%m-%d}: {self.exceptions} exceptions"


class ReconciliationException(models.Model):
    """A mismatch found by a reconciliation run: one side is missing or the amounts differ."""

    class Kind(models.TextChoices):
        MISSING_ON_PLATFORM = "missing_on_platform", "In the ledger, not on the platform"
        MISSING_IN_LEDGER = "missing_in_ledger", "On the platform, not in the ledger"
        AMOUNT_MISMATCH = "amount_mismatch", "Amounts differ"

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="items")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    comment = models.CharField(max_length=64, blank=True, default="")
    ledger_amount = models.BigIntegerField(null=True, blank=True)
    platform_amount = models.BigIntegerField(null=True, blank=True)
    ledger_reference = models.CharField(max_length=200, blank=True, default="")
    platform_ticket = models.BigIntegerField(null=True, blank=True)
    login = models.BigIntegerField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "trading_reconciliation_exception"

    def __str__(self) -> str:
        return f"{self.kind} {self.comment}"
