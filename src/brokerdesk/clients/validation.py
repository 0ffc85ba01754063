"""Contact-data rules: e-mail, country, phone number, date of birth, names."""

from __future__ import annotations

from datetime import date

import phonenumbers
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django_countries import countries

from brokerdesk.core.errors import ValidationError

MAX_AGE_YEARS = 120


def clean_email(value: str, *, field: str = "email") -> str:
    """A trimmed, lower-cased e-mail address, or a validation error."""
    email = (value or "").strip().lower()
    try:
        validate_email(email)
    except DjangoValidationError:
        raise ValidationError(
            f"{value!r} is not a valid e-mail address.", code="invalid_email", field=field
        ) from None
    return email


def clean_country(value: str, *, field: str = "country", required: bool = True) -> str:
    """An ISO 3166-1 alpha-2 code (upper case), or a validation error."""
    code = (value or "").strip().upper()
    if not code and not required:
        return ""
    if code not in dict(countries):
        raise ValidationError(
            f"{value!r} is not an ISO 3166-1 alpha-2 country code.",
            code="invalid_country",
            field=field,
        )
    return code


def clean_phone(value: str, *, country: str, field: str = "phone") -> str:
    """The number in E.164 form; a national number is read in ``country``'s numbering plan."""
    raw = (value or "").strip()
    if not raw:
        return ""
    try:
        number = phonenumbers.parse(raw, country or None)
    except phonenumbers.NumberParseException:
        raise ValidationError(
            f"{value!r} is not a phone number.", code="invalid_phone", field=field
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise ValidationError(
            f"{value!r} is not a valid phone number.", code="invalid_phone", field=field
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def age_on(born: date, today: date) -> int:
    """Whole years between ``born`` and ``today``."""
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def clean_date_of_birth(
    value: date | None, *, today: date, min_age: int, field: str = "date_of_birth"
) -> date:
    """A plausible date of birth of someone at least ``min_age`` years old."""
    if value is None:
        raise ValidationError("A date of birth is required.", code="required", field=field)
    if not isinstance(value, date):
        raise ValidationError("A date of birth is a date.", code="invalid_date", field=field)
    if value > today:
        raise ValidationError(
            "The date of birth is in the future.", code="date_in_future", field=field
        )
    age = age_on(value, today)
    if age < min_age:
        raise ValidationError(
            f"Clients must be at least {min_age} years old.",
            code="under_age",
            field=field,
            min_age=min_age,
        )
    if age > MAX_AGE_YEARS:
        raise ValidationError(
            "The date of birth is not plausible.", code="implausible_date", field=field
        )
    return value


def clean_text(value: str, *, field: str, max_length: int, required: bool = False) -> str:
    """Trimmed text within ``max_length``; required when asked."""
    text = (value or "").strip()
    if required and not text:
        raise ValidationError(f"{field} is required.", code="required", field=field)
    if len(text) > max_length:
        raise ValidationError(
            f"{field} is longer than {max_length} characters.", code="too_long", field=field
        )
    return text
