"""Forms of the bonus pages. Money is typed in major units ("50.00") and converted to minor
units with ``core.money.Money.parse`` (never a float)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from brokerdesk.bonuses.models import BonusStatus, Kind, Trigger
from brokerdesk.core.errors import ValidationError as DomainValidationError
from brokerdesk.core.money import Money

MONEY_FIELDS = (
    "fixed_amount",
    "max_per_grant",
    "cap_per_client",
    "budget",
    "min_deposit",
    "unlock_per_lot",
    "rebate_per_lot",
    "min_equity",
)


def _money(required: bool = False, **kwargs: Any) -> forms.DecimalField:
    return forms.DecimalField(
        required=required, min_value=Decimal(0), decimal_places=8, max_digits=20, **kwargs
    )


def _list(value: str) -> list[str]:
    return [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]


class PromoForm(forms.Form):
    """A client enters a promo code."""

    code = forms.CharField(label=_("Promo code"), max_length=40)


class PreviewForm(forms.Form):
    """How much of my bonus would a withdrawal remove?"""

    amount = _money(required=True, label=_("Amount to withdraw"))
    currency = forms.CharField(label=_("Currency"), max_length=10, initial="USD")


class CampaignForm(forms.Form):
    """A new campaign's terms."""

    code = forms.SlugField(label=_("Code"), max_length=64, help_text=_("For example welcome-2026."))
    name = forms.CharField(label=_("Name shown to clients"), max_length=120)
    kind = forms.ChoiceField(label=_("Type"), choices=Kind.choices)
    trigger = forms.ChoiceField(label=_("Granted on"), choices=Trigger.choices)
    currency = forms.CharField(label=_("Currency"), max_length=10, initial="USD")
    percent = forms.DecimalField(
        label=_("Percent of the deposit"),
        required=False,
        min_value=Decimal(0),
        max_value=Decimal(1000),
        decimal_places=2,
    )
    fixed_amount = _money(label=_("Fixed amount"))
    max_per_grant = _money(
        label=_("Maximum per grant"),
        help_text=_("Cashback and rebates: the most one client can be paid."),
    )
    cap_per_client = _money(label=_("Maximum per client"))
    budget = _money(label=_("Total budget"))
    min_deposit = _money(label=_("Minimum deposit"))
    deposit_sequence = forms.ChoiceField(
        label=_("Which deposits"),
        choices=[
            ("any", _("Any deposit")),
            ("first", _("First deposit only")),
            ("recurring", _("Later deposits only")),
        ],
    )
    deposit_methods = forms.CharField(
        label=_("Deposit methods (comma-separated; empty = any)"), required=False
    )
    jurisdictions = forms.CharField(
        label=_("Jurisdictions (comma-separated; empty = any)"), required=False
    )
    kyc_states = forms.CharField(
        label=_("KYC states (comma-separated; empty = any)"), required=False, initial="approved"
    )
    account_groups = forms.CharField(
        label=_("Account groups (patterns, comma-separated)"), required=False
    )
    promo_code = forms.CharField(label=_("Promo code"), required=False, max_length=40)
    unlock_per_lot = _money(label=_("Unlocked per lot traded"))
    lots_required = forms.DecimalField(
        label=_("Lots to unlock everything"), required=False, min_value=Decimal(0), decimal_places=4
    )
    window_days = forms.IntegerField(label=_("Days to trade the lots"), required=False, min_value=0)
    min_equity = _money(label=_("Minimum equity to unlock"))
    rebate_per_lot = _money(label=_("Rebate per lot"))
    cashback_percent = forms.DecimalField(
        label=_("Cashback, percent of a losing trade"),
        required=False,
        min_value=Decimal(0),
        max_value=Decimal(100),
        decimal_places=2,
    )
    expiry_days = forms.IntegerField(label=_("Expires after (days)"), required=False, min_value=0)
    withdrawal_forfeit = forms.ChoiceField(
        label=_("A withdrawal before unlock removes"),
        choices=[("full", _("the whole locked bonus")), ("proportional", _("the withdrawn share"))],
    )

    def terms(self) -> dict[str, Any]:
        """The cleaned data as ``services.create_campaign`` terms (minor units, bps)."""
        data = self.cleaned_data
        currency = data["currency"].strip().upper()
        terms: dict[str, Any] = {
            "name": data["name"],
            "kind": data["kind"],
            "trigger": data["trigger"],
            "currency": currency,
            "deposit_sequence": data["deposit_sequence"],
            "withdrawal_forfeit": data["withdrawal_forfeit"],
            "promo_code": data.get("promo_code") or "",
            "percent_bps": int((data.get("percent") or 0) * 100),
            "cashback_bps": int((data.get("cashback_percent") or 0) * 100),
            "lots_required": int((data.get("lots_required") or 0) * 10_000),
            "window_days": data.get("window_days") or 0,
            "expiry_days": data.get("expiry_days") or 0,
        }
        for name in ("deposit_methods", "jurisdictions", "kyc_states", "account_groups"):
            terms[name] = _list(data.get(name) or "")
        for name in MONEY_FIELDS:
            value = data.get(name)
            terms[name] = Money.parse(value, currency, field=name).amount if value else 0
        return terms

    def clean_currency(self) -> str:
        """A known currency code."""
        value = str(self.cleaned_data["currency"]).strip().upper()
        try:
            Money.parse("0", value)
        except DomainValidationError as exc:
            raise forms.ValidationError(exc.message) from None
        return value


class StatusForm(forms.Form):
    """Pause, resume or end a campaign."""

    status = forms.ChoiceField(
        label=_("New status"),
        choices=[("paused", _("Paused")), ("active", _("Active")), ("ended", _("Ended"))],
    )
    reason = forms.CharField(label=_("Reason"), max_length=500)


class GrantForm(forms.Form):
    """A manual grant by staff."""

    campaign = forms.ChoiceField(label=_("Campaign"))
    client_id = forms.UUIDField(label=_("Client id"))
    amount = _money(required=True, label=_("Amount"))
    reason = forms.CharField(label=_("Reason"), max_length=500)
    request_key = forms.CharField(widget=forms.HiddenInput)

    def __init__(self, *args: Any, campaigns: list[tuple[str, str]] | None = None, **kw: Any):
        super().__init__(*args, **kw)
        self.fields["campaign"].choices = campaigns or []  # type: ignore[attr-defined]


class ForfeitForm(forms.Form):
    """A manual forfeit by staff."""

    reason = forms.CharField(label=_("Reason"), max_length=500)
    request_key = forms.CharField(widget=forms.HiddenInput)


class GrantFilterForm(forms.Form):
    """Filters of the grants list."""

    campaign = forms.ChoiceField(label=_("Campaign"), required=False)
    status = forms.ChoiceField(
        label=_("Status"), required=False, choices=[("", _("Any")), *BonusStatus.choices]
    )
    kind = forms.ChoiceField(
        label=_("Type"), required=False, choices=[("", _("Any")), *Kind.choices]
    )
    client_id = forms.UUIDField(label=_("Client id"), required=False)

    def __init__(self, *args: Any, campaigns: list[tuple[str, str]] | None = None, **kw: Any):
        super().__init__(*args, **kw)
        self.fields["campaign"].choices = [("", _("Any")), *(campaigns or [])]  # type: ignore[attr-defined]
