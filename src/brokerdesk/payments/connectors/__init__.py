"""PSP connectors behind one port (``base.PSPConnector``), and the registry that finds them."""

from __future__ import annotations

import os
import threading

from brokerdesk.core.errors import ValidationError
from brokerdesk.payments.connectors.base import PSPConnector

_registry: dict[str, PSPConnector] = {}
_lock = threading.Lock()


def register(connector: PSPConnector) -> None:
    """Make ``connector`` the one used for its provider name (tests register their own)."""
    with _lock:
        _registry[connector.provider] = connector


def unregister(provider: str) -> None:
    """Forget the connector of ``provider``."""
    with _lock:
        _registry.pop(provider, None)


def get(provider: str) -> PSPConnector:
    """The connector for ``provider``; the sandbox one is built from the environment."""
    with _lock:
        connector = _registry.get(provider)
    if connector is not None:
        return connector
    if provider == "bank":
        from brokerdesk.payments.connectors.bank_wire import BankWireConnector

        connector = BankWireConnector()
        register(connector)
        return connector
    if provider == "sandbox" and os.environ.get("SANDBOX_PSP_SECRET"):
        from brokerdesk.payments.connectors.sandbox import SandboxConnector

        connector = SandboxConnector(
            base_url=os.environ.get("SANDBOX_PSP_URL", "http://127.0.0.1:7100"),
            api_key=os.environ.get("SANDBOX_PSP_API_KEY", "sk_sandbox"),
            webhook_secret=os.environ["SANDBOX_PSP_SECRET"],
        )
        register(connector)
        return connector
    if (
        provider == "stripe"
        and os.environ.get("STRIPE_API_KEY")
        and os.environ.get("STRIPE_WEBHOOK_SECRET")
    ):
        from brokerdesk.payments.connectors.stripe_psp import StripeConnector

        site = os.environ.get("BROKERDESK_PUBLIC_URL", "http://127.0.0.1:8000")
        connector = StripeConnector(
            api_key=os.environ["STRIPE_API_KEY"],
            webhook_secret=os.environ["STRIPE_WEBHOOK_SECRET"],
            success_url=f"{site}/portal/deposits/done",
            cancel_url=f"{site}/portal/deposits/cancelled",
        )
        register(connector)
        return connector
    connector = _from_environment(provider)
    if connector is not None:
        register(connector)
        return connector
    raise ValidationError(
        f"No payment provider {provider!r} is configured.",
        code="unknown_provider",
        field="provider",
    )


def _from_environment(provider: str) -> PSPConnector | None:
    """The e-wallet (Skrill) or crypto (NOWPayments) connector when its secrets are set."""
    env = os.environ
    site = env.get("BROKERDESK_PUBLIC_URL", "http://127.0.0.1:8000")
    hook = f"{site}/api/v1/payments/webhooks/{provider}"
    if provider == "skrill" and env.get("SKRILL_MERCHANT_EMAIL") and env.get("SKRILL_SECRET_WORD"):
        from brokerdesk.payments.connectors.skrill import SkrillConnector

        return SkrillConnector(
            merchant_email=env["SKRILL_MERCHANT_EMAIL"],
            merchant_id=env.get("SKRILL_MERCHANT_ID", ""),
            secret_word=env["SKRILL_SECRET_WORD"],
            api_password=env.get("SKRILL_API_PASSWORD", ""),
            status_url=hook,
            return_url=f"{site}/portal/",
        )
    if (
        provider == "nowpayments"
        and env.get("NOWPAYMENTS_API_KEY")
        and env.get("NOWPAYMENTS_IPN_SECRET")
    ):
        from brokerdesk.payments.connectors.nowpayments import NowPaymentsConnector

        return NowPaymentsConnector(
            api_key=env["NOWPAYMENTS_API_KEY"],
            ipn_secret=env["NOWPAYMENTS_IPN_SECRET"],
            ipn_url=hook,
            success_url=f"{site}/portal/",
            cancel_url=f"{site}/portal/",
            payout_email=env.get("NOWPAYMENTS_PAYOUT_EMAIL", ""),
            payout_password=env.get("NOWPAYMENTS_PAYOUT_PASSWORD", ""),
        )
    return None
