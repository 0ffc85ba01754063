"""FX rates behind a port: a fixed table (tests, demo) and the ECB daily reference rates.

``RateProvider.rate(sell, buy, on=None)`` answers units of ``buy`` per unit of ``sell`` (and the
day the rate is of). The ECB publishes rates against EUR (``eurofxref-daily.xml``: ``<Cube
time="YYYY-MM-DD"><Cube currency="USD" rate="1.0512"/>…``); cross rates go through EUR.
``import_ecb_xml`` stores a file's rates (daily or the 90-day/historical file) once per day.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_CEILING, ROUND_DOWN, Decimal, InvalidOperation
from typing import Protocol

import structlog
from defusedxml import DefusedXmlException, ElementTree
from django.db import transaction

from brokerdesk.core import clock
from brokerdesk.core.errors import NotFound, ValidationError
from brokerdesk.core.money import get_currency
from brokerdesk.payments.models import FxRate

log = structlog.get_logger(__name__)

ECB_DAILY_URL = "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-daily.xml"
_ECB_NS = "{http://www.ecb.int/vocabulary/2002-08-01/eurofxref}"
_PRECISION = Decimal("0.000000000001")


@dataclass(frozen=True)
class Quote:
    """A rate and the day it is of."""

    rate: Decimal
    day: date | None


class RateProvider(Protocol):
    """Where conversion rates come from."""

    def rate(self, sell: str, buy: str, *, on: date | None = None) -> Quote:
        """Units of ``buy`` per unit of ``sell`` (latest on or before ``on``)."""
        ...


class FixedRates:
    """Rates from a table of units per EUR (``{"USD": "1.05", …}``); for tests and demos."""

    def __init__(self, per_eur: Mapping[str, str | Decimal], *, day: date | None = None) -> None:
        self.per_eur = {k.upper(): Decimal(str(v)) for k, v in per_eur.items()}
        self.per_eur.setdefault("EUR", Decimal(1))
        self.day = day

    def rate(self, sell: str, buy: str, *, on: date | None = None) -> Quote:
        """The cross rate through EUR."""
        return Quote(_cross(self.per_eur, sell.upper(), buy.upper()), self.day)


class EcbRates:
    """The imported ECB reference rates (``FxRate`` rows of source ``ecb``)."""

    def rate(self, sell: str, buy: str, *, on: date | None = None) -> Quote:
        """The cross rate through EUR of the latest ECB day on or before ``on``."""
        sell, buy = sell.upper(), buy.upper()
        rows = FxRate.objects.filter(source="ecb", base="EUR")
        if on is not None:
            rows = rows.filter(day__lte=on)
        latest = rows.order_by("-day").values_list("day", flat=True).first()
        if latest is None:
            raise NotFound("No ECB rates have been imported.", code="no_rates", field="rate")
        table = dict(rows.filter(day=latest).values_list("currency", "rate"))
        table["EUR"] = Decimal(1)
        return Quote(_cross(table, sell, buy), latest)


_PROVIDER: RateProvider | None = None


def provider() -> RateProvider:
    """The rates port used when a command is given none (the imported ECB rates by default)."""
    return _PROVIDER if _PROVIDER is not None else EcbRates()


def set_provider(rates: RateProvider | None) -> RateProvider | None:
    """Use ``rates`` process-wide (``None``: back to ECB); return the previous one (tests)."""
    global _PROVIDER
    previous, _PROVIDER = _PROVIDER, rates
    return previous


def fx_amounts(
    sell_amount: int, sell: str, buy: str, rate: Decimal, fee_bps: int
) -> tuple[int, int]:
    """``(gross, fee)`` in minor units of ``buy`` for ``sell_amount`` of ``sell`` at ``rate``:
    the gross rounded down, the fee rounded up (the house's favour, as ``ledger.convert``)."""
    src, dst = get_currency(sell), get_currency(buy)
    gross = int(
        (Decimal(sell_amount) * rate).scaleb(dst.scale - src.scale).to_integral_value(ROUND_DOWN)
    )
    fee = int((Decimal(gross) * fee_bps / 10_000).to_integral_value(ROUND_CEILING))
    if gross - fee <= 0:
        raise ValidationError(
            "The amount is too small to convert at this rate.", code="too_small", field="amount"
        )
    return gross, fee


def _cross(per_eur: Mapping[str, Decimal], sell: str, buy: str) -> Decimal:
    for code in (sell, buy):
        if code not in per_eur:
            raise NotFound(f"No rate for {code}.", code="no_rate", field="currency")
    return (per_eur[buy] / per_eur[sell]).quantize(_PRECISION)


def parse_ecb_xml(text: str | bytes) -> dict[date, dict[str, Decimal]]:
    """The rates per day in an ECB eurofxref file (units per EUR)."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise ValidationError(f"Not an ECB rates file: {exc}.", code="bad_rates_file") from None
    except DefusedXmlException as exc:
        raise ValidationError(
            f"Refused: the rates file uses {type(exc).__name__}.", code="bad_rates_file"
        ) from None
    days: dict[date, dict[str, Decimal]] = {}
    for cube in root.iter(f"{_ECB_NS}Cube"):
        stamp = cube.get("time")
        if stamp is None:
            continue
        try:
            day = date.fromisoformat(stamp)
            days[day] = {
                str(c.get("currency")).upper(): Decimal(str(c.get("rate")))
                for c in cube.findall(f"{_ECB_NS}Cube")
            }
        except (ValueError, InvalidOperation):
            raise ValidationError(
                f"Bad rate or date in the ECB file near {stamp!r}.", code="bad_rates_file"
            ) from None
        if any(r <= 0 for r in days[day].values()):
            raise ValidationError(f"Non-positive rate on {stamp}.", code="bad_rates_file")
    if not days:
        raise ValidationError("The ECB file holds no rates.", code="bad_rates_file")
    return days


def import_ecb_xml(text: str | bytes) -> int:
    """Store the file's rates (a day already imported is left as it is); return rows added."""
    days = parse_ecb_xml(text)
    now = clock.now()
    rows = [
        FxRate(source="ecb", day=day, base="EUR", currency=code, rate=rate, imported_at=now)
        for day, table in days.items()
        for code, rate in table.items()
    ]
    with transaction.atomic():
        before = FxRate.objects.filter(source="ecb").count()
        FxRate.objects.bulk_create(rows, ignore_conflicts=True)
        return FxRate.objects.filter(source="ecb").count() - before


def download(url: str = ECB_DAILY_URL, *, timeout: float = 20) -> bytes:
    """The body at ``url`` (http(s) only)."""
    if not url.startswith(("https://", "http://")):
        raise ValidationError("The rates URL must be http(s).", field="url")
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (checked above)
        return bytes(response.read())


def fetch_ecb_daily(url: str = ECB_DAILY_URL, *, timeout: float = 20) -> int:
    """Download the ECB's daily file and import it."""
    return import_ecb_xml(download(url, timeout=timeout))


ECB_PUBLISHED_HOUR_UTC = 15  # the ECB publishes around 16:00 CET
_FETCHED_ON: date | None = None  # the last day the periodic fetch succeeded (this process)


def fetch_ecb_if_due(
    fetch: Callable[[], bytes] = download, *, now: datetime | None = None
) -> int | None:
    """The periodic job's body: import the ECB daily file once a day (after it is published,
    or at once when no ECB rate is stored yet); ``None`` when not due. A failure (network,
    a bad file) is logged and returns 0; the next tick tries again."""
    global _FETCHED_ON
    now = now or clock.now()
    today = now.date()
    have_any = FxRate.objects.filter(source="ecb").exists()
    if have_any and (today == _FETCHED_ON or now.hour < ECB_PUBLISHED_HOUR_UTC):
        return None
    if have_any and FxRate.objects.filter(source="ecb", day=today).exists():
        _FETCHED_ON = today
        return None
    try:
        added = import_ecb_xml(fetch())
    except Exception as exc:  # failure-tolerant: logged, retried at the next tick
        log.warning("ecb_fetch_failed", error=f"{type(exc).__name__}: {exc}")
        return 0
    _FETCHED_ON = today
    log.info("ecb_rates_imported", rows=added)
    return added
