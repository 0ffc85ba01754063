"""Money on integer minor units, and the currency table.

The table is ISO 4217 (from the ``iso4217`` package, each currency with its minor-unit scale)
plus configurable crypto-currencies and stablecoins (``settings.EXTRA_CURRENCIES`` or the
``EXTRA_CURRENCIES`` environment variable, ``CODE:SCALE[:kind],…``). Amounts are ``int``
minor units everywhere; ``Decimal`` appears only at the edges (parsing and display).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache

from iso4217 import Currency as _IsoCurrency

from brokerdesk.core.errors import ValidationError

# Crypto assets have more decimals than a 64-bit column holds at full precision; each is
# stored at a scale that keeps a realistic balance inside a signed bigint.
DEFAULT_EXTRA_CURRENCIES = "BTC:8:crypto,ETH:9:crypto,USDT:6:stablecoin,USDC:6:stablecoin"
MAX_MINOR_UNITS = 2**63 - 1


@dataclass(frozen=True, slots=True)
class CurrencySpec:
    """A currency the system can hold: its code, minor-unit scale and kind."""

    code: str
    scale: int
    name: str
    kind: str = "fiat"  # fiat | crypto | stablecoin

    @property
    def unit(self) -> int:
        """Minor units in one major unit (100 for USD, 1 for JPY)."""
        return int(10**self.scale)


def _parse_extra(spec: str) -> dict[str, CurrencySpec]:
    table: dict[str, CurrencySpec] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        code, scale, *rest = item.split(":")
        kind = rest[0] if rest else "crypto"
        table[code.upper()] = CurrencySpec(code.upper(), int(scale), code.upper(), kind)
    return table


@cache
def currency_table() -> dict[str, CurrencySpec]:
    """Every known currency by code: ISO 4217 with a defined minor unit, plus the extras."""
    from django.conf import settings

    table = {
        c.code: CurrencySpec(c.code, int(c.exponent), c.currency_name)
        for c in _IsoCurrency
        if c.exponent is not None
    }
    extra = getattr(settings, "EXTRA_CURRENCIES", None) or os.environ.get(
        "EXTRA_CURRENCIES", DEFAULT_EXTRA_CURRENCIES
    )
    table.update(_parse_extra(extra))
    return table


def get_currency(code: str, *, field: str = "currency") -> CurrencySpec:
    """The currency for ``code``, or a validation error naming ``field``."""
    spec = currency_table().get(code.upper() if isinstance(code, str) else "")
    if spec is None:
        raise ValidationError(
            f"Unknown currency {code!r}: use an ISO 4217 code or a configured crypto code.",
            code="unknown_currency",
            field=field,
        )
    return spec


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in minor units of one currency."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, int) or isinstance(self.amount, bool):
            raise ValidationError(
                "Amounts are whole numbers of minor units.", code="not_integer", field="amount"
            )
        get_currency(self.currency)

    @classmethod
    def parse(cls, value: str | Decimal, currency: str, *, field: str = "amount") -> Money:
        """Parse a decimal amount in major units ("10.50" USD → 1050), refusing extra digits."""
        spec = get_currency(currency)
        try:
            decimal = Decimal(str(value))
        except InvalidOperation:
            raise ValidationError(
                f"{value!r} is not a number.", code="not_a_number", field=field
            ) from None
        minor = decimal.scaleb(spec.scale)
        if not decimal.is_finite() or minor != minor.to_integral_value():
            raise ValidationError(
                f"{currency} has {spec.scale} decimal places; {value} has more.",
                code="too_many_decimals",
                field=field,
            )
        return cls(int(minor), spec.code)

    def to_decimal(self) -> Decimal:
        """The amount in major units."""
        return Decimal(self.amount).scaleb(-get_currency(self.currency).scale)

    def __str__(self) -> str:
        return f"{self.to_decimal():f} {self.currency}"

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValidationError(
                f"Cannot combine {self.currency} with {other.currency} without a conversion.",
                code="mixed_currencies",
                field="currency",
            )

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)
