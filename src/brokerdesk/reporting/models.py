"""Tables of reporting (only this module writes them): rollups and the projectors' bookkeeping.

The rollups are read models: projectors (``reporting.consumers``) add every money or trading
fact to them once, and reports read them instead of the live tables. Money is integer minor
units of the row's currency; volume is in MT5 volume units (1/10,000 lot).

* ``AccountDay``: one row per day x IB x client x trading account (server, login) x currency.
  Wallet-side facts (deposits, withdrawals, IB commissions) use server ``""`` and login 0.
* ``IBDay``: the same figures summed per day x IB x currency (kept in the same transaction);
  the "deposits and volume by IB by day" report reads only this small table.
* ``PaymentDay``: per day x provider x currency x kind (payment-method performance).
* ``AmlDay``: AML alerts per day x rule x severity.
* ``AppliedFact``: the key of every fact already added (``deal:server:ticket``…), so a
  redelivered or re-emitted event is a no-op.
* ``ProjectionState``: per projection, the newest event applied and when (freshness).
* ``AccountRef``: trading account (server, login) → client and currency, from
  ``trading.account_opened`` (deal events carry only server and login).
"""

from __future__ import annotations

from django.db import models

NO_IB = ""  # rows of clients no IB introduced


class AccountDay(models.Model):
    """Daily figures of one client's trading account (or wallet: login 0) under one IB."""

    day = models.DateField()
    currency = models.CharField(max_length=12)
    ib_id = models.CharField(max_length=40, blank=True, default=NO_IB)
    client_id = models.CharField(max_length=100, blank=True, default="")
    server = models.CharField(max_length=64, blank=True, default="")
    login = models.BigIntegerField(default=0)
    deposits = models.BigIntegerField(default=0)
    deposit_count = models.IntegerField(default=0)
    withdrawals = models.BigIntegerField(default=0)
    withdrawal_count = models.IntegerField(default=0)
    volume = models.BigIntegerField(default=0)  # 1/10,000 lot
    deals = models.IntegerField(default=0)
    profit = models.BigIntegerField(default=0)  # the deals' profit
    charges = models.BigIntegerField(default=0)  # the deals' commission + swap + fee (signed)
    ib_commission = models.BigIntegerField(default=0)  # commission accrued to the row's IB

    class Meta:
        db_table = "reporting_account_day"
        constraints = [
            models.UniqueConstraint(
                fields=["day", "currency", "ib_id", "client_id", "server", "login"],
                name="reporting_account_day_key",
            )
        ]
        indexes = [
            models.Index(fields=["client_id", "day"], name="reporting_account_day_client"),
            models.Index(fields=["day", "client_id"], name="reporting_account_day_day"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.server}:{self.login} {self.currency}"


class IBDay(models.Model):
    """Daily figures of one IB (or of no IB: ``ib_id`` empty) in one currency."""

    day = models.DateField()
    currency = models.CharField(max_length=12)
    ib_id = models.CharField(max_length=40, blank=True, default=NO_IB)
    deposits = models.BigIntegerField(default=0)
    deposit_count = models.IntegerField(default=0)
    withdrawals = models.BigIntegerField(default=0)
    withdrawal_count = models.IntegerField(default=0)
    volume = models.BigIntegerField(default=0)
    deals = models.IntegerField(default=0)
    profit = models.BigIntegerField(default=0)
    charges = models.BigIntegerField(default=0)
    ib_commission = models.BigIntegerField(default=0)

    class Meta:
        db_table = "reporting_ib_day"
        constraints = [
            models.UniqueConstraint(
                fields=["day", "currency", "ib_id"], name="reporting_ib_day_key"
            )
        ]
        indexes = [models.Index(fields=["ib_id", "day"], name="reporting_ib_day_ib")]

    def __str__(self) -> str:
        return f"{self.day} {self.ib_id or '-'} {self.currency}"


class PaymentDay(models.Model):
    """Daily count and amount of one kind of payment through one provider."""

    day = models.DateField()
    currency = models.CharField(max_length=12)
    provider = models.CharField(max_length=40)
    kind = models.CharField(max_length=24)  # deposit, deposit_reversed, withdrawal_paid, …
    count = models.IntegerField(default=0)
    amount = models.BigIntegerField(default=0)

    class Meta:
        db_table = "reporting_payment_day"
        constraints = [
            models.UniqueConstraint(
                fields=["day", "currency", "provider", "kind"], name="reporting_payment_day_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.provider} {self.kind}"


class AmlDay(models.Model):
    """Daily count of AML alerts raised by one rule at one severity."""

    day = models.DateField()
    rule = models.CharField(max_length=60)
    severity = models.CharField(max_length=20)
    alerts = models.IntegerField(default=0)

    class Meta:
        db_table = "reporting_aml_day"
        constraints = [
            models.UniqueConstraint(
                fields=["day", "rule", "severity"], name="reporting_aml_day_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.rule} {self.severity}"


class AppliedFact(models.Model):
    """A fact already added to the rollups (its key); adding it again is a no-op."""

    key = models.CharField(max_length=200, primary_key=True)

    class Meta:
        db_table = "reporting_applied_fact"

    def __str__(self) -> str:
        return self.key


class ProjectionState(models.Model):
    """How far one projection is: events applied, newest event time, last apply time."""

    name = models.CharField(max_length=60, primary_key=True)
    events = models.BigIntegerField(default=0)
    last_event_at = models.DateTimeField(null=True, blank=True)
    last_applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "reporting_projection_state"

    def __str__(self) -> str:
        return self.name


class AccountRef(models.Model):
    """Who owns a trading account and in which currency (from ``trading.account_opened``)."""

    server = models.CharField(max_length=64)
    login = models.BigIntegerField()
    client_id = models.CharField(max_length=100)
    currency = models.CharField(max_length=12)

    class Meta:
        db_table = "reporting_account_ref"
        constraints = [
            models.UniqueConstraint(fields=["server", "login"], name="reporting_account_ref_key")
        ]

    def __str__(self) -> str:
        return f"{self.server}:{self.login}"
