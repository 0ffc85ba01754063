"""Display of money, numbers, lots and prices per the active locale (no float anywhere).

Amounts are integer minor units; they become ``Decimal`` at the currency's scale and are
grouped and punctuated with the active language's Django formats (``DECIMAL_SEPARATOR``,
``THOUSAND_SEPARATOR``, ``NUMBER_GROUPING``). Locales whose Django formats leave grouping off
get the grouping their readers expect (thousands; lakh/crore for Hindi), so large balances
stay readable everywhere. Dates use Django's localized formats in the templates
(``|date:"SHORT_DATETIME_FORMAT"``).
"""

from __future__ import annotations

from decimal import Decimal

from django.utils import numberformat
from django.utils.formats import get_format
from django.utils.translation import get_language

from brokerdesk.core.money import Money, get_currency

#: Grouping for locales whose Django formats have none (``0``): lakh/crore for Hindi.
GROUPING_FALLBACK: dict[str, tuple[int, ...] | int] = {"hi": (3, 2, 0)}
#: Where money is grouped differently from Django's number format (CLDR: Chinese money in
#: thousands, not myriads).
GROUPING_OVERRIDE: dict[str, tuple[int, ...] | int] = {"zh": 3}
VOLUME_PER_LOT = 10_000  # MT5 volume units: 1/10,000 lot


def _grouping() -> tuple[int, ...] | int:
    language = (get_language() or "en").split("-")[0]
    if language in GROUPING_OVERRIDE:
        return GROUPING_OVERRIDE[language]
    grouping: tuple[int, ...] | int = get_format("NUMBER_GROUPING")
    return grouping or GROUPING_FALLBACK.get(language, 3)


def _thousand_separator() -> str:
    separator: str = get_format("THOUSAND_SEPARATOR")
    decimal: str = get_format("DECIMAL_SEPARATOR")
    if not separator or separator == decimal:
        return "." if decimal == "," else ","
    return separator


def format_decimal(value: Decimal | int, decimal_pos: int) -> str:
    """``Decimal("1234.5"), 2`` → ``"1,234.50"`` (en) / ``"1.234,50"`` (de)."""
    return numberformat.format(
        value,
        get_format("DECIMAL_SEPARATOR"),
        decimal_pos=decimal_pos,
        grouping=_grouping(),
        thousand_sep=_thousand_separator(),
        force_grouping=True,
        use_l10n=True,
    )


def format_minor(amount: int, currency: str) -> str:
    """``123456, "USD"`` → ``"1,234.56"`` (grouped and localised, at the currency's scale)."""
    scale = get_currency(currency).scale
    return format_decimal(Money(amount, currency).to_decimal(), scale)


def format_money(amount: int, currency: str) -> str:
    """``123456, "USD"`` → ``"1,234.56 USD"``: the localised amount and the currency code."""
    return f"{format_minor(amount, currency)}\N{NO-BREAK SPACE}{currency}"


def format_scaled(amount: int, digits: int) -> str:
    """An integer of ``10**-digits`` units (platform money, prices) as a localised number."""
    return format_decimal(Decimal(amount).scaleb(-digits), max(digits, 0))


def format_lots(volume: int) -> str:
    """MT5 volume (1/10,000 lot) as lots with two decimals: ``1500`` → ``"0.15"``."""
    return format_decimal(Decimal(volume) / VOLUME_PER_LOT, 2)


def format_count(value: int) -> str:
    """A whole number, grouped: ``12345`` → ``"12,345"``."""
    return format_decimal(value, 0)
