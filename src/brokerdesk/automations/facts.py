"""Whitelisted facts about a client, read through the clients and compliance queries.

Facts are looked up only when a condition asks for them, once per run. The risk score is
compliance's (``compliance.queries.risk_score``: a plain sum, capped at 100, a compliance
officer can explain).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def risk_score(client_id: str) -> int:
    """The client's risk score, 0 to 100 (compliance's)."""
    from brokerdesk.compliance import queries as compliance

    return compliance.risk_score(client_id)


def _fact(client_id: str, name: str) -> Any:
    from brokerdesk.clients.queries import get_client
    from brokerdesk.compliance import queries as compliance

    if name == "kyc_state":
        return compliance.kyc_status(client_id).state
    if name == "open_flags":
        return len(compliance.open_flags(client_id))
    if name == "aml_alerts":
        return len(compliance.alerts_of(client_id))
    if name == "risk_score":
        return risk_score(client_id)
    client = get_client(client_id)
    value = getattr(client, name)
    return list(value) if isinstance(value, tuple) else str(value or "")


def facts_of(client_id: str | None) -> Callable[[str], Any]:
    """A lookup of the client's facts (memoised; ``None`` for every fact without a client)."""
    cache: dict[str, Any] = {}

    def get(name: str) -> Any:
        if client_id is None:
            return None
        if name not in cache:
            cache[name] = _fact(client_id, name)
        return cache[name]

    return get
