"""Template filters of the propfirm pages: money from minor units, percentages from bps."""

from __future__ import annotations

from django import template

from brokerdesk.portal.formatting import format_money
from brokerdesk.propfirm.queries import bps_text

register = template.Library()


@register.filter
def pf_money(amount: int | None, currency: str) -> str:
    """Minor units as localised money with the currency code."""
    if amount is None:
        return "—"
    return format_money(int(amount), currency)


@register.filter
def pf_percent(bps: int | None) -> str:
    """Basis points as a localised percentage number (500 → 5)."""
    return bps_text(bps)
