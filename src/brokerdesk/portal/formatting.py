"""Display of money held as integer minor units (no float anywhere)."""

from __future__ import annotations

from django.utils.formats import number_format

from brokerdesk.core.money import Money, get_currency


def format_minor(amount: int, currency: str) -> str:
    """``123456, "USD"`` → ``"1,234.56"`` (grouped and localised, at the currency's scale)."""
    scale = get_currency(currency).scale
    return number_format(
        Money(amount, currency).to_decimal(), decimal_pos=scale, use_l10n=True, force_grouping=True
    )
