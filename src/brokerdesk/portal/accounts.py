"""Sign-up through django-allauth: the client sign-up form and the account adapter.

The form collects what ``clients.services.register_individual`` needs and checks it against the
jurisdiction's onboarding rules before anything is written; the adapter's ``save_user`` creates
the user and, in the same transaction, the client record through the clients service (an
explicit call, no signals).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.forms import LoginForm, SignupForm
from django import forms
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.forms import BaseForm
from django.http import HttpRequest
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _
from django_countries import countries

from brokerdesk.clients import services as client_services
from brokerdesk.clients import validation
from brokerdesk.clients.queries import search_clients
from brokerdesk.compliance.queries import jurisdictions, onboarding_rules, rule_set_for
from brokerdesk.core import clock
from brokerdesk.core.errors import DomainError
from brokerdesk.staff.roles import is_staff_member


def _jurisdiction_choices() -> list[tuple[str, str]]:
    fixed = getattr(settings, "SIGNUP_JURISDICTION", "")
    codes = [fixed] if fixed else jurisdictions()
    return [(code, rule_set_for(code).name) for code in codes]


class ClientSignupForm(SignupForm):
    """allauth's e-mail sign-up plus the data a client record needs."""

    first_name = forms.CharField(label=_("First name"), max_length=100)
    last_name = forms.CharField(label=_("Last name"), max_length=100)
    date_of_birth = forms.DateField(
        label=_("Date of birth"), widget=forms.DateInput(attrs={"type": "date"})
    )
    country = forms.ChoiceField(label=_("Country of residence"))
    jurisdiction = forms.ChoiceField(label=_("Account with"))
    promo_code = forms.CharField(
        label=_("Promo code (optional)"),
        required=False,
        max_length=60,
        help_text=_("If a partner gave you a code, enter it here."),
    )

    field_order = [
        "first_name",
        "last_name",
        "email",
        "date_of_birth",
        "country",
        "jurisdiction",
        "password1",
        "password2",
        "promo_code",
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["country"].choices = [("", "—"), *countries]
        self.fields["jurisdiction"].choices = _jurisdiction_choices()
        self.fields["first_name"].widget.attrs["autocomplete"] = "given-name"
        self.fields["last_name"].widget.attrs["autocomplete"] = "family-name"
        self.fields["date_of_birth"].widget.attrs["autocomplete"] = "bday"
        self.fields["country"].widget.attrs["autocomplete"] = "country"
        self.order_fields(self.field_order)

    def clean(self) -> dict[str, Any]:
        """Check the jurisdiction's onboarding rules (country, minimum age) before saving."""
        cleaned: dict[str, Any] = super().clean()
        country, jurisdiction = cleaned.get("country"), cleaned.get("jurisdiction")
        born: date | None = cleaned.get("date_of_birth")
        if country and jurisdiction and born:
            try:
                rules = onboarding_rules(
                    jurisdiction=jurisdiction, country=country, client_kind="individual"
                )
                validation.clean_date_of_birth(
                    born, today=clock.now().date(), min_age=rules.min_age
                )
            except DomainError as error:
                field = error.field if error.field in self.fields else None
                self.add_error(field, error.message)
        email = cleaned.get("email")
        already: bool = getattr(self, "account_already_exists", False)
        if email and not already and _client_email_taken(email):
            # Same answer as for a known user: an e-mail to the owner, nothing revealed here.
            self.account_already_exists = True
        return cleaned


class ClientLoginForm(LoginForm):
    """allauth's sign-in form, labelled for people: clients sign in with their e-mail."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        login = self.fields["login"]
        login.label = _("E-mail address or username")
        login.widget.attrs.update(placeholder="you@example.com", autocomplete="username")


def _attribute_referral(request: HttpRequest, user: AbstractBaseUser, promo_code: str) -> None:
    """Attribute the new client to the IB of the referral link they came through (a signed
    cookie set by ``portal:join``) or of the promo code they typed; first touch wins."""
    from brokerdesk.clients.queries import client_id_for_user
    from brokerdesk.partners import services as partners
    from brokerdesk.portal.views import REFERRAL_COOKIE

    token = request.COOKIES.get(REFERRAL_COOKIE) or None
    client_id = client_id_for_user(user)
    if client_id is not None and (token or promo_code.strip()):
        partners.attribute_at_registration(
            client_id, token=token, promo_code=promo_code.strip() or None, by="system:signup"
        )


def _chosen_language(user: AbstractBaseUser) -> str:
    """The language a client chose in the portal ("" when none, or not a client)."""
    from brokerdesk.clients.queries import client_id_for_user, get_client

    client_id = client_id_for_user(user)
    if client_id is None:
        return ""
    chosen = get_client(client_id).preferred_language
    return chosen if chosen in dict(settings.LANGUAGES) else ""


def _client_email_taken(email: str) -> bool:
    wanted = email.strip().lower()
    return any(c.email == wanted for c in search_clients(wanted, limit=5))


class AccountAdapter(DefaultAccountAdapter):
    """Creates the client record on sign-up and sends staff to the back office."""

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        """Sign-up is open unless ``ALLOW_SIGNUP`` is off."""
        return bool(getattr(settings, "ALLOW_SIGNUP", True))

    def save_user(
        self,
        request: HttpRequest,
        user: AbstractBaseUser,
        form: BaseForm,
        commit: bool = True,
    ) -> AbstractBaseUser:
        """Save the user and register the client in one transaction."""
        if not commit or not isinstance(form, ClientSignupForm):
            saved: AbstractBaseUser = super().save_user(request, user, form, commit=commit)
            return saved
        data = form.cleaned_data
        with transaction.atomic():
            saved = super().save_user(request, user, form, commit=True)
            client_services.register_individual(
                email=data["email"],
                first_name=data["first_name"],
                last_name=data["last_name"],
                date_of_birth=data["date_of_birth"],
                country=data["country"],
                jurisdiction=data["jurisdiction"],
                preferred_language=(get_language() or "en")[:10],
                user=saved,
                by=saved,
            )
            _attribute_referral(request, saved, data.get("promo_code") or "")
        return saved

    def post_login(self, request: HttpRequest, user: AbstractBaseUser, **kwargs: Any) -> Any:
        """After sign-in, show the site in the client's preferred language, unless they picked
        one with the language switcher; with neither, the browser's language applies."""
        response = super().post_login(request, user, **kwargs)
        language = _chosen_language(user)
        switched = settings.LANGUAGE_COOKIE_NAME in request.COOKIES  # the switcher wins
        if language and not switched and hasattr(response, "set_cookie"):
            response.set_cookie(
                settings.LANGUAGE_COOKIE_NAME, language, max_age=365 * 24 * 3600, samesite="Lax"
            )
        return response

    def get_login_redirect_url(self, request: HttpRequest) -> str:
        """Staff land in the back office, clients in the portal."""
        if is_staff_member(request.user):
            return "/backoffice/"
        url: str = super().get_login_redirect_url(request)
        return url
