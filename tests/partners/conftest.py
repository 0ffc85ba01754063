"""Fixtures and factories for the partners tests."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from brokerdesk.compliance import services as compliance
from brokerdesk.compliance.kyc import KycState
from brokerdesk.core.bus.base import Message
from brokerdesk.core.ids import new_id
from brokerdesk.partners import hierarchy, plans
from brokerdesk.partners.models import IB
from tests.clients.factories import individual

_seq = itertools.count(1)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def bundled_rule_sets(request: pytest.FixtureRequest) -> None:
    """The bundled rule sets (compliance's policy needs them)."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None:
        return
    request.getfixturevalue("transactional_db" if marker.kwargs.get("transaction") else "db")
    compliance.load_bundled_rule_sets()


def make_ib(parent: IB | None = None, **kw: Any) -> IB:
    """A new IB (under ``parent``)."""
    n = next(_seq)
    return hierarchy.create_ib(
        code=kw.pop("code", f"ib{n}-{new_id().hex[:6]}"),
        name=f"IB {n}",
        by="system:test",
        parent_id=parent.pk if parent else None,
        **kw,
    )


def chain(length: int) -> list[IB]:
    """A line of IBs: master first, each the parent of the next."""
    out: list[IB] = []
    for _ in range(length):
        out.append(make_ib(out[-1] if out else None))
    return out


def verified_client(country: str = "CY") -> UUID:
    """A registered client whose KYC is approved."""
    client = individual(country=country)
    for step in (KycState.UNDER_VERIFICATION, KycState.APPROVED):
        compliance.transition_kyc(
            client.pk, step, by="system:test", reason="test", provider="sumsub"
        )
    return client.pk


REBATE = {
    "symbol_groups": {"FX": ["EURUSD", "GBPUSD", "*JPY"], "METALS": ["XAU*"]},
    "components": [{"type": "rebate", "rates": {"FX": 700, "METALS": 1000}}],
}


def plan_for(ib: IB, rules: dict[str, Any] | None = None, code: str | None = None) -> Any:
    """Create a plan with ``rules`` and assign it to ``ib``; return the first version."""
    version = plans.create_plan(
        code=code or f"plan-{new_id().hex[:8]}",
        name="Plan",
        currency="USD",
        rules=rules or REBATE,
        by="system:test",
    )
    plans.assign_plan(ib.pk, version.plan_id, by="system:test", reason="test")
    return version


_deal = itertools.count(1000)


def deal_payload(client_id: UUID | None, *, at: datetime, **kw: Any) -> dict[str, Any]:
    """A ``trading.deal_closed`` payload as the trading module will send it."""
    data: dict[str, Any] = {
        "server": "MT5-Live",
        "login": 5000 + next(_deal) % 1000,
        "deal": next(_deal),
        "client_id": str(client_id) if client_id else None,
        "time": at.isoformat(),
        "symbol": "EURUSD",
        "volume": 10_000,
        "profit": -2500,
        "commission": -700,
        "swap": -30,
        "currency": "USD",
        "group": "real\\std",
        "position_id": 77,
        "entry": 1,
    }
    data.update(kw)
    return data


def message(payload: dict[str, Any]) -> Message:
    """A bus message carrying ``trading.deal_closed``."""
    return Message(
        event_id=str(new_id()),
        stream="trading",
        type="trading.deal_closed",
        payload=payload,
        occurred_at=payload.get("time", T0.isoformat()),
    )
