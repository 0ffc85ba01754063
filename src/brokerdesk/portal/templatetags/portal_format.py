"""Template filters for locale-aware money and trading figures (see ``portal.formatting``).

``{{ amount|money:currency }}`` → ``1,234.56 USD``; ``{{ amount|minor:currency }}`` →
``1,234.56``; ``{{ volume|lots }}``; ``{{ points|scaled:digits }}``; ``{{ n|count }}``.
"""

from __future__ import annotations

from django import template

from brokerdesk.portal import formatting

register = template.Library()


@register.filter
def money(amount: int | None, currency: str) -> str:
    """Minor units with the currency code, per the active locale."""
    return "" if amount is None else formatting.format_money(int(amount), currency)


@register.filter
def minor(amount: int | None, currency: str) -> str:
    """Minor units as a localised number at the currency's scale."""
    return "" if amount is None else formatting.format_minor(int(amount), currency)


@register.filter
def scaled(amount: int | None, digits: int) -> str:
    """An integer of ``10**-digits`` units as a localised number."""
    return "" if amount is None else formatting.format_scaled(int(amount), int(digits))


@register.filter
def lots(volume: int | None) -> str:
    """MT5 volume as lots."""
    return "" if volume is None else formatting.format_lots(int(volume))


@register.filter
def count(value: int | None) -> str:
    """A whole number, grouped."""
    return "" if value is None else formatting.format_count(int(value))
