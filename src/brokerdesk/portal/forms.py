"""Forms of the client portal: amounts are typed in major units and become integer minor units
here (``Decimal``, never float), checked against the currency's scale."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, cast

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.forms import BaseForm
from django.utils.translation import gettext_lazy as _

from brokerdesk.compliance.rules import DOCUMENT_TYPES
from brokerdesk.core.errors import DomainError
from brokerdesk.core.money import get_currency

WALLET_CURRENCIES = ("USD", "EUR", "GBP")
DOCUMENT_LABELS = {
    "passport": _("Passport"),
    "national_id": _("National identity card"),
    "driving_licence": _("Driving licence"),
    "residence_permit": _("Residence permit"),
    "proof_of_address": _("Proof of address (utility bill or bank letter)"),
    "selfie": _("Selfie with your document"),
    "bank_statement": _("Bank statement"),
    "source_of_funds": _("Source of funds"),
}


def to_minor(amount: Decimal, currency: str) -> int:
    """``Decimal("12.34"), "USD"`` → ``1234``; more decimals than the currency has is an error."""
    scale = get_currency(currency).scale
    scaled = amount.scaleb(scale)
    if scaled != scaled.to_integral_value():
        raise ValidationError(
            _("Use at most %(places)d decimal places for %(currency)s."),
            code="too_many_decimals",
            params={"places": scale, "currency": currency},
        )
    return int(scaled)


def _choices(form: BaseForm, name: str) -> forms.ChoiceField:
    """The form's choice field ``name`` (typed, to set its choices)."""
    return cast(forms.ChoiceField, form.fields[name])


def add_domain_error(form: BaseForm, error: DomainError) -> None:
    """Show a service's refusal on the field it names, or above the form."""
    field = error.field if error.field in form.fields else None
    form.add_error(field, error.message)


class AmountField(forms.DecimalField):
    """A positive amount in major units (converted to minor units by the form)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("label", _("Amount"))
        kwargs.setdefault("min_value", Decimal("0.01"))
        kwargs.setdefault("max_digits", 15)
        kwargs.setdefault("decimal_places", 8)
        super().__init__(**kwargs)
        self.widget.attrs.update(inputmode="decimal", autocomplete="off", step="0.01")

    def to_python(self, value: Any) -> Any:
        """Accept a comma as the decimal mark too (typed on a phone in many languages)."""
        if isinstance(value, str):
            value = value.strip().replace("\N{NO-BREAK SPACE}", "").replace(" ", "")
            if value.count(",") == 1 and "." not in value:
                value = value.replace(",", ".")
        try:
            return super().to_python(value)
        except InvalidOperation:  # pragma: no cover - DecimalField already reports it
            raise ValidationError(_("Enter an amount."), code="invalid") from None


def wallet_currencies() -> list[str]:
    """The currencies the broker offers wallets in (``PORTAL_WALLET_CURRENCIES``)."""
    return list(getattr(settings, "PORTAL_WALLET_CURRENCIES", WALLET_CURRENCIES))


def _currency_choices() -> list[tuple[str, str]]:
    return [(code, code) for code in wallet_currencies()]


def _other_currency_field(name: str, label: Any, same: Any, form: BaseForm) -> None:
    """Add the optional choice of another currency (blank: the same one) to ``form`` when the
    broker offers more than one; with a single currency the form stays as it was."""
    if len(wallet_currencies()) > 1:
        form.fields[name] = forms.ChoiceField(
            label=label, required=False, choices=[("", same), *_currency_choices()]
        )


class MoneyForm(forms.Form):
    """An amount in one of the wallet currencies; ``minor`` holds it in minor units."""

    amount = AmountField()
    currency = forms.ChoiceField(label=_("Currency"))
    request_id = forms.CharField(widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _choices(self, "currency").choices = _currency_choices()
        self.minor = 0

    def clean(self) -> dict[str, Any]:
        """Convert the amount to minor units of the chosen currency."""
        cleaned: dict[str, Any] = super().clean() or {}
        amount, currency = cleaned.get("amount"), cleaned.get("currency")
        if amount is not None and currency:
            try:
                self.minor = to_minor(amount, currency)
            except ValidationError as error:
                self.add_error("amount", error)
        return cleaned


class DepositForm(MoneyForm):
    """How much to deposit, paid through the sandbox PSP's hosted page; with more than one
    wallet currency, also the wallet to credit (``wallet_currency``, blank: the paid one)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _other_currency_field(
            "wallet_currency", _("Credit my wallet in"), _("The currency I pay in"), self
        )

    @property
    def wallet(self) -> str:
        """The wallet currency to credit (the paid currency unless another was chosen)."""
        return self.cleaned_data.get("wallet_currency") or self.cleaned_data["currency"]


class WithdrawForm(MoneyForm):
    """How much to withdraw, and to which of the client's payment methods; with more than one
    wallet currency, also the currency to be paid in (``payout_currency``, blank: the
    wallet's)."""

    method = forms.ChoiceField(label=_("Pay out to"))

    def __init__(self, *args: Any, methods: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _choices(self, "method").choices = methods
        _other_currency_field(
            "payout_currency", _("Receive the money in"), _("The wallet's currency"), self
        )

    @property
    def payout(self) -> str:
        """The currency paid out (the wallet's unless another was chosen)."""
        return self.cleaned_data.get("payout_currency") or self.cleaned_data["currency"]


class TransferForm(forms.Form):
    """Wallet → trading account or back."""

    direction = forms.ChoiceField(
        label=_("Direction"),
        choices=[
            ("to_trading", _("From my wallet to a trading account")),
            ("to_wallet", _("From a trading account to my wallet")),
        ],
        widget=forms.RadioSelect,
    )
    account = forms.ChoiceField(label=_("Trading account"))
    amount = AmountField()
    request_id = forms.CharField(widget=forms.HiddenInput)

    def __init__(self, *args: Any, accounts: list[tuple[str, str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _choices(self, "account").choices = [(a[0], a[1]) for a in accounts]
        self.currencies = {a[0]: a[2] for a in accounts}
        self.minor = 0

    def clean(self) -> dict[str, Any]:
        """Convert the amount to minor units of the account's currency."""
        cleaned: dict[str, Any] = super().clean() or {}
        amount, account = cleaned.get("amount"), cleaned.get("account")
        if amount is not None and account in self.currencies:
            try:
                self.minor = to_minor(amount, self.currencies[account])
            except ValidationError as error:
                self.add_error("amount", error)
        return cleaned


class OpenAccountForm(forms.Form):
    """A new live or demo trading account."""

    kind = forms.ChoiceField(
        label=_("Account type"),
        choices=[("live", _("Live (real money)")), ("demo", _("Demo (play money)"))],
        widget=forms.RadioSelect,
        initial="demo",
    )
    currency = forms.ChoiceField(label=_("Account currency"), choices=[("USD", "USD")])
    leverage = forms.TypedChoiceField(
        label=_("Leverage"),
        coerce=int,
        choices=[(30, "1:30"), (50, "1:50"), (100, "1:100"), (200, "1:200")],
        initial=100,
    )


class DocumentForm(forms.Form):
    """One identity or address document."""

    doc_type = forms.ChoiceField(label=_("Document type"))
    file = forms.FileField(
        label=_("File"),
        help_text=_("A photo (JPEG or PNG) or a PDF, at most 10 MB."),
        widget=forms.ClearableFileInput(attrs={"accept": "image/jpeg,image/png,application/pdf"}),
    )
    issued_on = forms.DateField(
        label=_("Issue date"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=_("Required for a proof of address (at most six months old)."),
    )
    expires_on = forms.DateField(
        label=_("Expiry date"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _choices(self, "doc_type").choices = [
            (code, DOCUMENT_LABELS[code]) for code in DOCUMENT_TYPES if code in DOCUMENT_LABELS
        ]


class ProfileForm(forms.Form):
    """The contact details a client may change themself."""

    phone = forms.CharField(label=_("Phone"), required=False, max_length=30)
    address_line = forms.CharField(label=_("Address"), required=False, max_length=200)
    city = forms.CharField(label=_("City"), required=False, max_length=100)
    postal_code = forms.CharField(label=_("Postal code"), required=False, max_length=20)
    preferred_language = forms.ChoiceField(label=_("Language"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _choices(self, "preferred_language").choices = list(settings.LANGUAGES)
        self.fields["phone"].widget.attrs.update(autocomplete="tel", inputmode="tel")
        self.fields["address_line"].widget.attrs["autocomplete"] = "street-address"
        self.fields["city"].widget.attrs["autocomplete"] = "address-level2"
        self.fields["postal_code"].widget.attrs["autocomplete"] = "postal-code"


class StatementForm(forms.Form):
    """Which wallet and period a statement covers."""

    currency = forms.ChoiceField(label=_("Wallet currency"))
    start = forms.DateField(label=_("From"), widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label=_("To"), widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, currencies: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _choices(self, "currency").choices = [(c, c) for c in currencies]

    def clean(self) -> dict[str, Any]:
        """The period must not end before it starts."""
        cleaned: dict[str, Any] = super().clean() or {}
        start, end = cleaned.get("start"), cleaned.get("end")
        if start and end and end < start:
            self.add_error("end", _("The end date must not be before the start date."))
        return cleaned
