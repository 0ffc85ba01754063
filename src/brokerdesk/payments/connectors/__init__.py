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
    raise ValidationError(
        f"No payment provider {provider!r} is configured.",
        code="unknown_provider",
        field="provider",
    )
