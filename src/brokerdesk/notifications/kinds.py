"""The kinds of notification: who receives them, their label and where they link to.

Each kind has two templates, ``notifications/kinds/<kind>_subject.txt`` and
``<kind>_body.txt``, written with ``{% translate %}``/``{% blocktranslate %}`` and rendered in
the recipient's language.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class Kind:
    """A kind of notification."""

    code: str
    label: Any
    audience: str  # client or ib


KINDS: dict[str, Kind] = {
    k.code: k
    for k in (
        Kind("deposit_received", _("Deposit received"), "client"),
        Kind("withdrawal_approved", _("Withdrawal approved"), "client"),
        Kind("document_rejected", _("Document rejected"), "client"),
        Kind("bonus_granted", _("Bonus granted"), "client"),
        Kind("bonus_removed", _("Bonus removed"), "client"),
        Kind("commission_paid", _("Commission paid"), "ib"),
        Kind("challenge_passed", _("Challenge passed"), "client"),
        Kind("challenge_failed", _("Challenge failed"), "client"),
        Kind("ticket_replied", _("Support replied"), "client"),
    )
}

CHANNELS = ("email", "in_app")

#: What a prop-firm rule code means to a trader (codes not listed are shown as they are).
RULE_LABELS: dict[str, Any] = {
    "daily_loss": _("the maximum daily loss"),
    "max_loss": _("the maximum loss"),
    "trailing_loss": _("the maximum trailing loss"),
    "profit_target": _("the profit target"),
    "min_days": _("the minimum trading days"),
    "time_limit": _("the time limit"),
    "consistency": _("the consistency rule"),
}


def kinds_for(audience: str) -> list[Kind]:
    """The kinds a client (``client``) or a partner (``ib``) can receive."""
    return [k for k in KINDS.values() if k.audience == audience]
