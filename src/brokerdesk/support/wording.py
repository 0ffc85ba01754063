"""System messages of a ticket thread, worded in the reader's language when shown.

A system message is stored as a code and parameters (never as English text), so the client
reads "Your withdrawal … was approved" in their own language, and a translator sees whole
sentences.
"""

from __future__ import annotations

from typing import Any

from django.utils.formats import number_format
from django.utils.translation import gettext_lazy

from brokerdesk.core.errors import DomainError
from brokerdesk.core.money import Money, get_currency

SYSTEM_TEXTS: dict[str, Any] = {
    "deposit.confirmed": gettext_lazy(
        "Deposit %(reference)s of %(amount)s %(currency)s is confirmed."
    ),
    "deposit.reversed": gettext_lazy(
        "Deposit %(reference)s of %(amount)s %(currency)s was reversed."
    ),
    "deposit.failed": gettext_lazy("Deposit %(reference)s of %(amount)s %(currency)s failed."),
    "deposit.held": gettext_lazy(
        "Deposit %(reference)s of %(amount)s %(currency)s is on hold for a review."
    ),
    "withdrawal.requested": gettext_lazy(
        "Withdrawal %(reference)s of %(amount)s %(currency)s was received and is being reviewed."
    ),
    "withdrawal.approved": gettext_lazy(
        "Withdrawal %(reference)s of %(amount)s %(currency)s was approved."
    ),
    "withdrawal.rejected": gettext_lazy(
        "Withdrawal %(reference)s of %(amount)s %(currency)s was rejected."
    ),
    "withdrawal.sent": gettext_lazy(
        "Withdrawal %(reference)s of %(amount)s %(currency)s was sent to the payment provider."
    ),
    "withdrawal.paid": gettext_lazy(
        "Withdrawal %(reference)s of %(amount)s %(currency)s was paid out."
    ),
    "withdrawal.failed": gettext_lazy(
        "Withdrawal %(reference)s of %(amount)s %(currency)s could not be paid out."
    ),
    "withdrawal.returned": gettext_lazy(
        "Withdrawal %(reference)s of %(amount)s %(currency)s came back; "
        "the funds are in your wallet again."
    ),
    "payment.other": gettext_lazy("Payment %(reference)s changed: %(event)s."),
    "ticket.reopened_by_email": gettext_lazy(
        "A reply came in on closed ticket %(previous)s, so this new ticket was opened."
    ),
}


def format_amount(amount: int, currency: str) -> str:
    """Minor units as a localised decimal at the currency's scale (no float)."""
    try:
        scale = get_currency(currency).scale
        value = Money(int(amount), currency).to_decimal()
    except (DomainError, TypeError, ValueError):
        return str(amount)
    return number_format(value, decimal_pos=scale, use_l10n=True, force_grouping=True)


def system_text(code: str, params: dict[str, Any]) -> str:
    """The system message ``code`` with ``params``, in the active language."""
    template = SYSTEM_TEXTS.get(code, SYSTEM_TEXTS["payment.other"])
    values = dict(params)
    if "amount" in values and "currency" in values:
        values["amount"] = format_amount(values["amount"], str(values["currency"]))
    values.setdefault("reference", "")
    values.setdefault("event", code)
    try:
        return str(template) % values
    except (KeyError, TypeError, ValueError):
        return str(SYSTEM_TEXTS["payment.other"]) % {
            "reference": values.get("reference", ""),
            "event": code,
        }
