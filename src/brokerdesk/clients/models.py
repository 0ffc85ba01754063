"""clients tables: clients, segments, tags, platform logins and the timeline read model.

Only ``clients.services`` writes these tables.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django_countries.fields import CountryField

from brokerdesk.core.ids import new_id


class ClientKind(models.TextChoices):
    """A person or a company."""

    INDIVIDUAL = "individual", "Individual"
    CORPORATE = "corporate", "Corporate"


class Segment(models.Model):
    """A named group of clients (retail, professional, VIP …)."""

    code = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.name


class Tag(models.Model):
    """A free label staff put on clients."""

    name = models.SlugField(max_length=50, unique=True)

    def __str__(self) -> str:
        return self.name


class Client(models.Model):
    """A client of the broker: an individual or a company."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    kind = models.CharField(max_length=12, choices=ClientKind.choices)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="client",
    )
    email = models.EmailField(unique=True)
    phone = models.CharField(max_length=20, blank=True, default="")  # E.164
    country = CountryField()  # residence (individual) or incorporation (corporate)
    jurisdiction = models.SlugField(max_length=30)  # the licence the client is onboarded under
    preferred_language = models.CharField(max_length=10, blank=True, default="en")
    # individual
    first_name = models.CharField(max_length=100, blank=True, default="")
    last_name = models.CharField(max_length=100, blank=True, default="")
    date_of_birth = models.DateField(null=True, blank=True)
    nationality = CountryField(blank=True, default="")
    # corporate
    company_name = models.CharField(max_length=200, blank=True, default="")
    registration_number = models.CharField(max_length=50, blank=True, default="")
    # address
    address_line = models.CharField(max_length=200, blank=True, default="")
    city = models.CharField(max_length=100, blank=True, default="")
    postal_code = models.CharField(max_length=20, blank=True, default="")

    segments = models.ManyToManyField(Segment, blank=True, related_name="clients")
    tags = models.ManyToManyField(Tag, blank=True, related_name="clients")

    registered_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    relationship_ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["jurisdiction", "registered_at"]),
            models.Index(fields=["last_name", "first_name"]),
            models.Index(fields=["company_name"]),
        ]

    def __str__(self) -> str:
        return f"{self.display_name} <{self.email}>"

    @property
    def display_name(self) -> str:
        """The person's full name or the company name."""
        if self.kind == ClientKind.CORPORATE:
            return self.company_name
        return f"{self.first_name} {self.last_name}".strip()


class PlatformLogin(models.Model):
    """A login on a trading platform server, linked to a client and a trading account."""

    class Platform(models.TextChoices):
        MT4 = "mt4", "MetaTrader 4"
        MT5 = "mt5", "MetaTrader 5"
        CTRADER = "ctrader", "cTrader"
        MATCHTRADER = "matchtrader", "Match-Trader"
        SIMULATOR = "simulator", "Simulator"

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="logins")
    platform = models.CharField(max_length=20, choices=Platform.choices)
    server = models.CharField(max_length=100)
    login = models.BigIntegerField()
    currency = models.CharField(max_length=10)
    is_live = models.BooleanField()
    trading_account_id = models.UUIDField(null=True, blank=True, unique=True)  # trading module's id
    linked_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["server", "login"], name="platform_login_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.server}:{self.login}"


class ClientTimelineEntry(models.Model):
    """Read model: one thing that happened to a client, for the support timeline."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="timeline")
    occurred_at = models.DateTimeField()
    kind = models.CharField(max_length=100)
    summary = models.CharField(max_length=500)
    data = models.JSONField(default=dict, blank=True)
    # The event this entry was projected from: replays and redeliveries do not duplicate it.
    source_event_id = models.UUIDField(null=True, blank=True, unique=True)

    class Meta:
        indexes = [models.Index(fields=["client", "-occurred_at"], name="timeline_client_time")]
        verbose_name_plural = "client timeline entries"

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M} {self.kind}"
