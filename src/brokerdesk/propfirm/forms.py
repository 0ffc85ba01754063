"""Forms of the propfirm pages: products (with one sub-form per phase), staff decisions,
payouts. Percentages are typed as percent (5 or 2.5) and stored as basis points; money as
decimal major units, stored as integer minor units."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.forms import formset_factory
from django.utils.translation import gettext_lazy as _

from brokerdesk.core.errors import ValidationError as DomainValidationError
from brokerdesk.core.money import Money
from brokerdesk.propfirm.queries import ProductView


def _percent_field(label: Any) -> forms.DecimalField:
    """An optional percentage from 0.01 to 100 with two decimals."""
    return forms.DecimalField(
        label=label,
        required=False,
        min_value=Decimal("0.01"),
        max_value=Decimal("100"),
        decimal_places=2,
    )


def _bps(value: Decimal | None) -> int | None:
    return None if value is None else int(value * 100)


def _percent(bps: int | None) -> Decimal | None:
    return None if bps is None else Decimal(bps) / 100


class ProductForm(forms.Form):
    """A product's commercial terms (its phases come from :class:`PhaseForm` rows)."""

    code = forms.SlugField(label=_("Code"), max_length=64)
    name = forms.CharField(label=_("Name"), max_length=200)
    currency = forms.CharField(label=_("Currency"), max_length=12, initial="USD")
    price = forms.DecimalField(label=_("Price"), min_value=Decimal("0.01"), decimal_places=8)
    account_size = forms.DecimalField(
        label=_("Account size"), min_value=Decimal("1"), decimal_places=8
    )
    profit_split = forms.DecimalField(
        label=_("Trader's profit share (%)"),
        min_value=Decimal("0"),
        max_value=Decimal("100"),
        decimal_places=2,
        initial=Decimal("80"),
    )
    server = forms.CharField(label=_("Platform server"), max_length=64, initial="sim")
    platform_group = forms.CharField(
        label=_("Platform group"), max_length=128, initial="demo\\standard"
    )
    leverage = forms.IntegerField(label=_("Leverage (1:N)"), min_value=1, max_value=1000,
                                  initial=100)  # fmt: skip

    def service_fields(self, phases: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The cleaned data as ``services.create_product`` takes it (money in minor units);
        None, with the error on its field, when an amount does not fit the currency."""
        data = self.cleaned_data
        currency = data["currency"].strip().upper()
        try:
            price = Money.parse(data["price"], currency, field="price").amount
            size = Money.parse(data["account_size"], currency, field="account_size").amount
        except DomainValidationError as error:
            field = error.field if error.field in self.fields else None
            self.add_error(field, error.message)
            return None
        return {
            "code": data["code"],
            "name": data["name"],
            "currency": currency,
            "price": price,
            "account_size": size,
            "profit_split_bps": _bps(data["profit_split"]),
            "server": data["server"],
            "platform_group": data["platform_group"],
            "leverage": data["leverage"],
            "phases": phases,
        }

    @classmethod
    def initial_for(cls, product: ProductView) -> dict[str, Any]:
        """Initial values to revise ``product``."""
        return {
            "code": product.code,
            "name": product.name,
            "currency": product.currency,
            "price": Money(product.price, product.currency).to_decimal(),
            "account_size": Money(product.account_size, product.currency).to_decimal(),
            "profit_split": Decimal(product.profit_split_bps) / 100,
            "server": product.server,
            "platform_group": product.platform_group,
            "leverage": product.leverage,
        }


class PhaseForm(forms.Form):
    """One phase's rules; a row left without a name is no phase."""

    name = forms.CharField(label=_("Phase name"), max_length=64, required=False)
    daily_loss = _percent_field(_("Maximum daily loss (%)"))
    max_loss = _percent_field(_("Maximum overall loss (%)"))
    max_loss_mode = forms.ChoiceField(
        label=_("Overall loss measured"),
        choices=[("static", _("from the starting balance")),
                 ("trailing", _("from the high-water mark"))],
        initial="static",
    )  # fmt: skip
    profit_target = forms.DecimalField(
        label=_("Profit target (%)"), required=False, min_value=Decimal("0.01"),
        max_value=Decimal("1000"), decimal_places=2,
    )  # fmt: skip
    min_trading_days = forms.IntegerField(
        label=_("Minimum trading days"), required=False, min_value=0, max_value=365
    )
    time_limit_days = forms.IntegerField(
        label=_("Time limit (days)"), required=False, min_value=1, max_value=3650
    )
    # Not a format string ("% o" would read as one): xgettext:no-python-format
    consistency = _percent_field(_("Best day at most (% of profit)"))

    def phase(self) -> dict[str, Any] | None:
        """The phase as the product stores it, or None for an empty row."""
        data = self.cleaned_data
        if not data.get("name"):
            return None
        return {
            "name": data["name"],
            "daily_loss_bps": _bps(data.get("daily_loss")),
            "max_loss_bps": _bps(data.get("max_loss")),
            "max_loss_mode": data.get("max_loss_mode") or "static",
            "profit_target_bps": _bps(data.get("profit_target")),
            "min_trading_days": data.get("min_trading_days") or 0,
            "time_limit_days": data.get("time_limit_days"),
            "consistency_bps": _bps(data.get("consistency")),
        }

    @classmethod
    def initial_for(cls, phase: dict[str, Any]) -> dict[str, Any]:
        """Initial values from a stored phase."""
        return {
            "name": phase.get("name"),
            "daily_loss": _percent(phase.get("daily_loss_bps")),
            "max_loss": _percent(phase.get("max_loss_bps")),
            "max_loss_mode": phase.get("max_loss_mode", "static"),
            "profit_target": _percent(phase.get("profit_target_bps")),
            "min_trading_days": phase.get("min_trading_days") or None,
            "time_limit_days": phase.get("time_limit_days"),
            "consistency": _percent(phase.get("consistency_bps")),
        }


PhaseFormSet = formset_factory(PhaseForm, extra=0, min_num=3, max_num=3)


class DecisionForm(forms.Form):
    """A staff member fails or passes an active phase by hand."""

    outcome = forms.ChoiceField(
        label=_("Decision"), choices=[("fail", _("Fail the phase")), ("pass", _("Pass the phase"))]
    )
    reason = forms.CharField(label=_("Reason"), max_length=500)


class PayoutForm(forms.Form):
    """A funded trader asks for their profit share, optionally straight to a payment method."""

    method = forms.ChoiceField(label=_("Pay my share to"), required=False)
    request_id = forms.CharField(widget=forms.HiddenInput, max_length=100)

    def __init__(self, *args: Any, methods: list[tuple[str, str]] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        method = self.fields["method"]
        assert isinstance(method, forms.ChoiceField)
        method.choices = [("", _("My wallet (withdraw later)")), *(methods or [])]


class CorrectionReviewForm(forms.Form):
    """A dealer closes a flagged dealer correction, saying what they did about it."""

    note = forms.CharField(
        label=_("What did you do about it?"),
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={"required": _("Write a note: what you checked and what you did.")},
    )
