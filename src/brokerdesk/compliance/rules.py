"""Jurisdiction rule sets: versioned data, validated into ``RuleSetView``.

The bundled sets live in ``rulesets/*.json``; each load is stored as a version in ``RuleSet``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from brokerdesk.compliance.kyc import KycState
from brokerdesk.core.errors import ValidationError
from brokerdesk.core.money import get_currency

BUNDLED_DIR = Path(__file__).resolve().parent / "rulesets"
ACTIONS = ("deposit", "trade", "withdraw", "earn_commission", "receive_bonus")
CLIENT_KINDS = ("individual", "corporate")
DOCUMENT_TYPES = (
    "passport",
    "national_id",
    "driving_licence",
    "residence_permit",
    "proof_of_address",
    "selfie",
    "bank_statement",
    "source_of_funds",
    "certificate_of_incorporation",
    "articles_of_association",
    "ubo_declaration",
    "register_of_directors",
    "other",
)

# What each open flag blocks unless a rule set says otherwise ("flag_blocks").
DEFAULT_FLAG_BLOCKS: dict[str, tuple[str, ...]] = {
    "sanctions_hit": ACTIONS,
    "fraud_suspected": ACTIONS,
    "aml_hold": ("deposit", "withdraw", "earn_commission", "receive_bonus"),
    "dispute": ("withdraw", "receive_bonus", "earn_commission"),
    "chargeback": ("withdraw", "receive_bonus"),
    "documents_expired": ("deposit", "withdraw"),
    "legal_hold": (),  # blocks deletion of records, not actions
    "pep": (),  # triggers enhanced due diligence, not a block by itself
}


# AML monitoring thresholds; a rule set's "aml" object overrides any of them.
DEFAULT_AML: dict[str, Any] = {
    "large_deposit": {"USD": 1_000_000, "EUR": 1_000_000, "GBP": 850_000},
    "velocity_per_day": 3,
    "structuring_count": 5,
    "structuring_days": 7,
    "structuring_band": 0.9,
    "dormancy_days": 180,
    "withdrawal_ratio": 0.8,
    "withdrawal_window_days": 30,
    "shared_method_clients": 2,
    "payer_name_min_score": 80,
}


def _fail(path: str, message: str) -> ValidationError:
    return ValidationError(f"{path}: {message}", code="invalid_rule_set", field=path)


@dataclass(frozen=True)
class RuleSetView:
    """A validated jurisdiction rule set."""

    jurisdiction: str
    version: int
    name: str
    effective_from: date
    min_age: int
    client_kinds: tuple[str, ...]
    allowed_countries: frozenset[str]
    blocked_countries: frozenset[str]
    required_documents: dict[str, tuple[tuple[str, ...], ...]]
    pre_verification_states: frozenset[str]
    pre_verification_limits: dict[str, int]
    pre_verification_trade: bool
    bonuses_allowed: bool
    commission_allowed: bool
    document_max_age_days: dict[str, int]
    document_expiry_warning_days: int
    rescreen_every_days: int
    edd_triggers: dict[str, Any]
    retention_years: int
    flag_blocks: dict[str, tuple[str, ...]] = field(default_factory=dict)
    aml: dict[str, Any] = field(default_factory=dict)
    checksum: str = ""

    def country_allowed(self, country: str) -> bool:
        """True when clients from ``country`` may be onboarded."""
        if country in self.blocked_countries:
            return False
        return not self.allowed_countries or country in self.allowed_countries

    def blocks(self, flag: str) -> tuple[str, ...]:
        """The actions an open flag of kind ``flag`` blocks."""
        return self.flag_blocks.get(flag, DEFAULT_FLAG_BLOCKS.get(flag, ACTIONS))


def checksum(data: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a rule set."""
    return hashlib.sha256(
        json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def _countries(data: dict[str, Any], key: str) -> frozenset[str]:
    from django_countries import countries

    known = dict(countries)
    values = data.get(key, [])
    if not isinstance(values, list):
        raise _fail(key, "a list of ISO country codes")
    for code in values:
        if code not in known:
            raise _fail(key, f"{code!r} is not an ISO 3166-1 alpha-2 code")
    return frozenset(values)


def _limits(values: Any, path: str) -> dict[str, int]:
    if not isinstance(values, dict):
        raise _fail(path, "a map of currency → minor units")
    out: dict[str, int] = {}
    for cur, amount in values.items():
        get_currency(cur, field=f"{path}.{cur}")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise _fail(f"{path}.{cur}", "a whole number of minor units ≥ 0")
        out[cur] = amount
    return out


def parse(data: dict[str, Any]) -> RuleSetView:
    """Validate rule-set data; a ``ValidationError`` names the offending key."""
    if not isinstance(data, dict):
        raise _fail("$", "a rule set is a JSON object")
    for key in ("jurisdiction", "version", "name", "effective_from", "required_documents"):
        if key not in data:
            raise _fail(key, "is required")
    jurisdiction = data["jurisdiction"]
    if not isinstance(jurisdiction, str) or not jurisdiction.replace("-", "").isalnum():
        raise _fail("jurisdiction", "a slug such as 'cysec'")
    version = data["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _fail("version", "a whole number ≥ 1")
    try:
        effective_from = date.fromisoformat(data["effective_from"])
    except (TypeError, ValueError):
        raise _fail("effective_from", "an ISO date") from None
    kinds = tuple(data.get("client_kinds", CLIENT_KINDS))
    if not set(kinds) <= set(CLIENT_KINDS):
        raise _fail("client_kinds", f"any of {', '.join(CLIENT_KINDS)}")
    required: dict[str, tuple[tuple[str, ...], ...]] = {}
    for kind in kinds:
        groups = data["required_documents"].get(kind)
        if not isinstance(groups, list) or not groups:
            raise _fail(f"required_documents.{kind}", "a non-empty list of alternatives")
        for group in groups:
            if not isinstance(group, list) or not group or not set(group) <= set(DOCUMENT_TYPES):
                raise _fail(f"required_documents.{kind}", f"unknown document type in {group}")
        required[kind] = tuple(tuple(g) for g in groups)
    pre = data.get("pre_verification", {})
    states = frozenset(pre.get("states", []))
    if not states <= {s.value for s in KycState}:
        raise _fail("pre_verification.states", "unknown KYC state")
    flag_blocks = {}
    for flag, actions in data.get("flag_blocks", {}).items():
        if not set(actions) <= set(ACTIONS):
            raise _fail(f"flag_blocks.{flag}", f"actions are {', '.join(ACTIONS)}")
        flag_blocks[flag] = tuple(actions)
    max_age = data.get("document_max_age_days", {})
    for doc_type, days in max_age.items():
        if doc_type not in DOCUMENT_TYPES or not isinstance(days, int) or days < 1:
            raise _fail(f"document_max_age_days.{doc_type}", "a known type and days ≥ 1")
    edd = data.get("edd_triggers", {})
    if "cumulative_deposits_over" in edd:
        _limits(edd["cumulative_deposits_over"], "edd_triggers.cumulative_deposits_over")

    def positive(key: str, default: int) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _fail(key, "a whole number ≥ 1")
        return value

    return RuleSetView(
        jurisdiction=jurisdiction,
        version=version,
        name=str(data["name"]),
        effective_from=effective_from,
        min_age=positive("min_age", 18),
        client_kinds=kinds,
        allowed_countries=_countries(data, "allowed_countries"),
        blocked_countries=_countries(data, "blocked_countries"),
        required_documents=required,
        pre_verification_states=states,
        pre_verification_limits=_limits(
            pre.get("deposit_limits", {}), "pre_verification.deposit_limits"
        ),
        pre_verification_trade=bool(pre.get("trade", False)),
        bonuses_allowed=bool(data.get("bonuses_allowed", False)),
        commission_allowed=bool(data.get("commission_allowed", True)),
        document_max_age_days=dict(max_age),
        document_expiry_warning_days=positive("document_expiry_warning_days", 30),
        rescreen_every_days=positive("rescreen_every_days", 30),
        edd_triggers=dict(edd),
        retention_years=positive("retention_years", 5),
        flag_blocks=flag_blocks,
        aml={**DEFAULT_AML, **data.get("aml", {})},
        checksum=checksum(data),
    )


def bundled() -> list[dict[str, Any]]:
    """The rule sets shipped with Brokerdesk, as data."""
    return [json.loads(p.read_text()) for p in sorted(BUNDLED_DIR.glob("*.json"))]
