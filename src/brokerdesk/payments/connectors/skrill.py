"""Skrill (e-wallet), in its own formats: Quick Checkout for deposits, the Automated Payments
Interface for payouts, and ``status_url`` notifications signed with ``md5sig``.

A notification is a form-encoded POST. Its ``md5sig`` is the upper-case hex MD5 of
``merchant_id + transaction_id + UPPER(MD5(secret word)) + mb_amount + mb_currency + status``
with the values exactly as posted; we recompute it (and ``sha2sig``, SHA-256 of the same
string, when Skrill sends it), compare in constant time, and also require the notification to
name our merchant account. Skrill notifications carry no timestamp: a replay is stopped by the
webhook inbox (one row per (provider, ``mb_transaction_id:status``)).

Status codes: 2 processed → deposit.succeeded (or payout.paid for a payout reference);
0 pending and 1 scheduled → ignored; -1 cancelled and -2 failed → deposit.failed /
payout.failed; -3 chargeback → deposit.chargeback; -4 payout returned by the recipient's bank
→ payout.returned. The amount credited is ``mb_amount`` in ``mb_currency`` (the signed
figures), converted to minor units exactly.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl, urlencode

from defusedxml import ElementTree

from brokerdesk.core.errors import ValidationError
from brokerdesk.core.money import Money
from brokerdesk.payments.connectors.base import (
    EventKind,
    InvalidSignature,
    NormalizedEvent,
    ProviderError,
    ProviderPayment,
)
from brokerdesk.payments.connectors.http import Transport, urllib_transport

CHECKOUT_URL = "https://pay.skrill.com"
API_URL = "https://www.skrill.com/app/pay.pl"
SIGNED_FIELDS = ("merchant_id", "transaction_id", "mb_amount", "mb_currency", "status")
PAYOUT_PREFIX = "wd_"  # our withdrawal references start so; deposits start with dep_


def md5sig(fields: Mapping[str, str], secret_word: str) -> str:
    """The ``md5sig`` Skrill computes over a notification's ``fields``."""
    return _signature(hashlib.md5, fields, secret_word)


def sha2sig(fields: Mapping[str, str], secret_word: str) -> str:
    """The optional ``sha2sig`` (SHA-256 over the same string)."""
    return _signature(hashlib.sha256, fields, secret_word)


def _signature(
    algorithm: Callable[[bytes], Any], fields: Mapping[str, str], secret_word: str
) -> str:
    hashed_secret = hashlib.md5(secret_word.encode()).hexdigest().upper()  # noqa: S324
    text = (
        fields.get("merchant_id", "")
        + fields.get("transaction_id", "")
        + hashed_secret
        + fields.get("mb_amount", "")
        + fields.get("mb_currency", "")
        + fields.get("status", "")
    )
    return str(algorithm(text.encode()).hexdigest()).upper()


class SkrillConnector:
    """Skrill Quick Checkout deposits, API payouts, and ``md5sig``-verified notifications."""

    provider = "skrill"

    def __init__(
        self,
        *,
        merchant_email: str,
        merchant_id: str,
        secret_word: str,
        api_password: str,
        status_url: str,
        return_url: str,
        transport: Transport = urllib_transport,
    ) -> None:
        self.merchant_email = merchant_email
        self.merchant_id = merchant_id
        self._secret_word = secret_word
        self._api_password = api_password
        self.status_url = status_url
        self.return_url = return_url
        self._transport = transport

    def __repr__(self) -> str:  # never show the secret word or the API password
        return f"SkrillConnector(merchant_email={self.merchant_email!r})"

    # ------------------------------------------------------------------ deposits and payouts

    def create_deposit(
        self, *, reference: str, amount: int, currency: str, metadata: Mapping[str, str]
    ) -> ProviderPayment:
        """Prepare a Quick Checkout session; the client pays on ``pay_url``."""
        form = {
            "pay_to_email": self.merchant_email,
            "transaction_id": reference,
            "amount": _major(amount, currency),
            "currency": currency,
            "status_url": self.status_url,
            "return_url": self.return_url,
            "prepare_only": "1",
            "detail1_description": "Wallet deposit",
            "detail1_text": reference,
        }
        status, body = self._transport(
            "POST",
            CHECKOUT_URL,
            {"Content-Type": "application/x-www-form-urlencoded"},
            urlencode(form).encode(),
        )
        session_id = body.decode(errors="replace").strip()
        if status != 200 or not session_id.isalnum():
            raise ProviderError(f"Skrill refused the checkout ({status}).", field="provider")
        return ProviderPayment(
            self.provider, reference, "pending", f"{CHECKOUT_URL}/?sid={session_id}"
        )

    def create_payout(
        self, *, reference: str, amount: int, currency: str, destination: str
    ) -> ProviderPayment:
        """Send ``amount`` to the Skrill account ``destination`` (prepare, then transfer)."""
        password = hashlib.md5(self._api_password.encode()).hexdigest()  # noqa: S324 - API's rule
        prepared = self._api(
            {
                "action": "prepare",
                "email": self.merchant_email,
                "password": password,
                "amount": _major(amount, currency),
                "currency": currency,
                "bnf_email": destination,
                "subject": "Withdrawal",
                "note": reference,
                "frn_trn_id": reference,
                "status_url": self.status_url,
            }
        )
        session_id = prepared.findtext("sid") or ""
        if not session_id:
            raise ProviderError(_api_error(prepared, "prepare"), field="provider")
        done = self._api({"action": "transfer", "sid": session_id})
        transaction_id = done.findtext("transaction/id") or ""
        if not transaction_id:
            raise ProviderError(_api_error(done, "transfer"), field="provider")
        status = {"2": "paid", "1": "scheduled", "-2": "failed"}.get(
            done.findtext("transaction/status") or "", "pending"
        )
        return ProviderPayment(self.provider, transaction_id, status)

    def _api(self, params: Mapping[str, str]) -> ElementTree.Element:
        status, body = self._transport(
            "POST",
            API_URL,
            {"Content-Type": "application/x-www-form-urlencoded"},
            urlencode(params).encode(),
        )
        if status != 200:
            raise ProviderError(f"Skrill's API answered {status}.", field="provider")
        try:
            return ElementTree.fromstring(body)
        except ElementTree.ParseError:
            raise ProviderError(
                "Skrill's API answered with unreadable XML.", field="provider"
            ) from None

    # ----------------------------------------------------------------------- notifications

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> NormalizedEvent:
        """Verify ``md5sig`` (and ``sha2sig`` when present) and the merchant, then normalise."""
        fields = dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
        self._verify(fields)
        return _normalise(fields)

    def _verify(self, fields: Mapping[str, str]) -> None:
        given = fields.get("md5sig", "")
        if not given or not hmac.compare_digest(given.upper(), md5sig(fields, self._secret_word)):
            raise InvalidSignature("Webhook refused: Skrill md5sig check failed.", field="md5sig")
        given_sha = fields.get("sha2sig", "")
        if given_sha and not hmac.compare_digest(
            given_sha.upper(), sha2sig(fields, self._secret_word)
        ):
            raise InvalidSignature("Webhook refused: Skrill sha2sig check failed.", field="sha2sig")
        if fields.get("merchant_id") != self.merchant_id or (
            fields.get("pay_to_email", self.merchant_email) != self.merchant_email
        ):
            raise InvalidSignature(
                "Webhook refused: it names another Skrill merchant account.",
                code="wrong_merchant",
                field="merchant_id",
            )


DEPOSIT_KINDS: dict[str, EventKind] = {
    "2": "deposit.succeeded",
    "-1": "deposit.failed",
    "-2": "deposit.failed",
    "-3": "deposit.chargeback",
}
PAYOUT_KINDS: dict[str, EventKind] = {
    "2": "payout.paid",
    "-1": "payout.failed",
    "-2": "payout.failed",
    "-4": "payout.returned",
}


def _normalise(fields: Mapping[str, str]) -> NormalizedEvent:
    reference = fields.get("transaction_id", "")
    status = fields.get("status", "")
    kinds = PAYOUT_KINDS if reference.startswith(PAYOUT_PREFIX) else DEPOSIT_KINDS
    currency = fields.get("mb_currency", "").upper()
    return NormalizedEvent(
        provider="skrill",
        event_id=f"{fields.get('mb_transaction_id', '')}:{status}",
        kind=kinds.get(status, "ignored"),
        reference=reference,
        provider_id=fields.get("mb_transaction_id", ""),
        amount=_minor(fields.get("mb_amount", ""), currency),
        currency=currency,
        status=status,
        raw={k: v for k, v in fields.items() if k not in ("md5sig", "sha2sig")},
    )


def _major(amount: int, currency: str) -> str:
    return f"{Money(amount, currency).to_decimal():f}"


def _minor(value: str, currency: str) -> int:
    """Skrill's decimal string ("25.4", "25") in minor units; refuses anything inexact."""
    try:
        return Money.parse(Decimal(value), currency, field="mb_amount").amount
    except (InvalidOperation, ValidationError):
        raise InvalidSignature(
            f"Skrill sent an amount we cannot read: {value!r} {currency}.",
            code="malformed_webhook",
            field="mb_amount",
        ) from None


def _api_error(document: ElementTree.Element, step: str) -> str:
    code = document.findtext("error/error_msg") or "unknown error"
    return f"Skrill refused the payout at {step}: {code}."
