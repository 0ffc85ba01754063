"""The eligibility matrix and the grant amount (pure functions: no database)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from brokerdesk.bonuses.eligibility import Facts, base_amount, check, grant_amount
from brokerdesk.bonuses.models import Campaign

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def terms(**overrides: Any) -> Campaign:
    data: dict[str, Any] = {
        "name": "Welcome",
        "kind": "credit",
        "trigger": "deposit",
        "currency": "USD",
        "status": "active",
        "kyc_states": ["approved"],
        "jurisdictions": ["fsa-sc"],
        "account_groups": [],
        "deposit_methods": ["sandbox", "stripe"],
        "deposit_sequence": "first",
        "promo_code": "",
        "min_deposit": 10_000,
        "percent_bps": 5_000,
        "max_per_grant": 50_000,
    }
    data.update(overrides)
    return Campaign(**data)


def facts(**overrides: Any) -> Facts:
    data: dict[str, Any] = {
        "kyc_state": "approved",
        "jurisdiction": "fsa-sc",
        "deposit_amount": 20_000,
        "deposit_currency": "USD",
        "deposit_method": "sandbox",
        "first_deposit": True,
        "at": NOW,
    }
    data.update(overrides)
    return Facts(**data)


@pytest.mark.parametrize(
    ("campaign_terms", "client_facts", "rule"),
    [
        ({}, {}, None),
        ({"status": "paused"}, {}, "campaign_inactive"),
        ({"ends_at": NOW}, {}, "campaign_inactive"),
        ({"starts_at": datetime(2026, 7, 1, tzinfo=UTC)}, {}, "campaign_inactive"),
        ({}, {"deposit_currency": "EUR"}, "currency"),
        ({}, {"deposit_amount": 9_999}, "min_deposit"),
        ({}, {"deposit_method": "bank_wire"}, "deposit_method"),
        ({"deposit_methods": []}, {"deposit_method": "bank_wire"}, None),
        ({}, {"first_deposit": False}, "first_deposit_only"),
        ({"deposit_sequence": "recurring"}, {"first_deposit": True}, "recurring_only"),
        ({"deposit_sequence": "recurring"}, {"first_deposit": False}, None),
        ({"deposit_sequence": "any"}, {"first_deposit": False}, None),
        ({"promo_code": "SPRING"}, {}, "promo_code"),
        ({"promo_code": "SPRING"}, {"redeemed_codes": frozenset({"SPRING"})}, None),
        ({}, {"jurisdiction": "cysec"}, "jurisdiction"),
        ({"jurisdictions": []}, {"jurisdiction": "cysec"}, None),
        ({}, {"kyc_state": "under_verification"}, "kyc_status"),
        ({"kyc_states": []}, {"kyc_state": "under_verification"}, None),
        ({}, {"policy_allowed": False, "policy_reason": "chargeback open"}, "policy"),
        ({"account_groups": ["real\\*"]}, {"account_groups": ("demo\\standard",)}, "account_group"),
        ({"account_groups": ["real\\*"]}, {"account_groups": ("real\\pro",)}, None),
    ],
)
def test_the_eligibility_matrix(campaign_terms, client_facts, rule):  # type: ignore[no-untyped-def]
    refusal = check(terms(**campaign_terms), facts(**client_facts))
    assert (refusal.rule if refusal else None) == rule
    if refusal:
        assert refusal.message


def test_a_refusal_from_the_policy_carries_the_policys_reason():
    refusal = check(terms(), facts(policy_allowed=False, policy_reason="A chargeback is open."))
    assert refusal is not None and refusal.message == "A chargeback is open."


@pytest.mark.parametrize(
    ("campaign_terms", "deposit", "client_total", "campaign_total", "amount", "rule"),
    [
        ({}, 20_000, 0, 0, 10_000, None),  # 50 % of 200.00
        ({}, 200_000, 0, 0, 50_000, None),  # capped per grant
        ({"cap_per_client": 60_000}, 200_000, 30_000, 0, 30_000, None),  # what is left for her
        ({"cap_per_client": 60_000}, 200_000, 60_000, 0, 0, "client_cap"),
        ({"budget": 100_000}, 200_000, 0, 95_000, 5_000, None),  # the end of the budget
        ({"budget": 100_000}, 200_000, 0, 100_000, 0, "budget"),
        ({"percent_bps": 0, "fixed_amount": 2_500}, 20_000, 0, 0, 2_500, None),
        ({"percent_bps": 3_333}, 10_001, 0, 0, 3_333, None),  # rounded down, never up
        ({"percent_bps": 0}, 20_000, 0, 0, 0, "zero_amount"),
    ],
)
def test_the_grant_amount_respects_the_limits(  # type: ignore[no-untyped-def]
    campaign_terms, deposit, client_total, campaign_total, amount, rule
):
    got, refusal = grant_amount(
        terms(**campaign_terms), deposit, client_total=client_total, campaign_total=campaign_total
    )
    assert got == amount and (refusal.rule if refusal else None) == rule


def test_cashback_and_rebate_grants_are_their_payout_cap():
    assert base_amount(terms(kind="rebate", max_per_grant=7_000), 1_000_000) == 7_000
