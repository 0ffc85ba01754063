"""Demo data of automations: a few rules an operator would start with (created once)."""

from __future__ import annotations

from typing import Any

from brokerdesk.automations import services
from brokerdesk.automations.models import Rule

EU = ["AT", "BE", "CY", "DE", "ES", "FR", "GR", "IE", "IT", "NL", "PT"]

DEMO_RULES: list[dict[str, Any]] = [
    {
        "name": "Open a live account after KYC approval",
        "trigger": "kyc.approved",
        "conditions": [],
        "actions": [
            {
                "action": "create_trading_account",
                "params": {"server": "sim", "group": "real\\standard", "leverage": 100},
            }
        ],
    },
    {
        "name": "EU clients trade in the EU group",
        "trigger": "trading.account_opened",
        "conditions": [
            {"field": "event.is_live", "op": "eq", "value": True},
            {"field": "client.country", "op": "in", "value": EU},
        ],
        "actions": [{"action": "assign_group", "params": {"group": "real\\eu"}}],
    },
    {
        "name": "Risky withdrawals go to manual review with an EDD ticket",
        "trigger": "withdrawal.requested",
        "conditions": [{"field": "client.risk_score", "op": "gte", "value": 50}],
        "actions": [
            {"action": "route_withdrawal", "params": {"lane": "manual_review"}},
            {
                "action": "open_edd_ticket",
                "params": {"subject": "Withdrawal by a high-risk client", "priority": "high"},
            },
        ],
    },
    {
        "name": "Approve deal commissions of settled deals",
        "trigger": "commission.accrued",
        "conditions": [{"field": "event.kind", "op": "eq", "value": "deal"}],
        "actions": [{"action": "approve_commission", "params": {"make_payable": False}}],
        "enabled": False,
    },
]


def seed() -> str:
    """Create the demo rules that do not exist yet (by name)."""
    made = 0
    for spec in DEMO_RULES:
        if Rule.objects.filter(name=spec["name"]).exists():
            continue
        services.save_rule(by="system:demo", **spec)
        made += 1
    return f"automation rules: {made} created, {Rule.objects.count()} in all"
