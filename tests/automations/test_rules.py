"""The rule language: operators, typing, and clear field errors when a rule is saved."""

from __future__ import annotations

from typing import Any

import pytest

from brokerdesk.automations import rules, services
from brokerdesk.automations.models import Rule, RuleVersion
from brokerdesk.core.errors import PermissionDenied, ValidationError
from brokerdesk.core.models import AuditEntry
from tests.automations.conftest import ADMIN, rule
from tests.clients.factories import user

NOTIFY = [{"action": "notify", "params": {"kind": "deposit_received"}}]
PAYLOAD = {"amount": 150_000, "currency": "EUR", "provider": "sandbox", "available": True}


def check(field: str, op: str, value: Any, payload: dict[str, Any] | None = None) -> bool:
    facts = {"country": "DE", "segments": ["vip", "eu"], "risk_score": 40}
    ok, evaluated = rules.evaluate(
        [{"field": field, "op": op, "value": value}], payload or PAYLOAD, facts.get
    )
    assert evaluated[0]["actual"] == rules.lookup(field, payload or PAYLOAD, facts.get)
    return ok


@pytest.mark.parametrize(
    ("field", "op", "value", "expected"),
    [
        ("event.amount", "eq", 150_000, True),
        ("event.amount", "ne", 150_000, False),
        ("event.amount", "gt", 149_999, True),
        ("event.amount", "gt", 150_000, False),
        ("event.amount", "gte", 150_000, True),
        ("event.amount", "lt", 150_000, False),
        ("event.amount", "lte", 150_000, True),
        ("event.currency", "in", ["USD", "EUR"], True),
        ("event.currency", "not_in", ["USD", "EUR"], False),
        ("event.provider", "contains", "box", True),
        ("event.available", "eq", True, True),
        ("client.country", "in", ["DE", "FR"], True),
        ("client.segments", "contains", "vip", True),
        ("client.segments", "contains", "retail", False),
        ("client.risk_score", "gte", 50, False),
    ],
)
def test_each_operator_compares_as_documented(field, op, value, expected):
    assert check(field, op, value) is expected


def test_a_missing_field_matches_only_the_negative_operators():
    assert check("event.reason", "eq", "x") is False
    assert check("event.reason", "ne", "x") is True
    assert check("event.reason", "not_in", ["x"]) is True


def test_a_number_condition_on_a_text_value_is_a_type_error_naming_the_condition():
    with pytest.raises(rules.ConditionTypeError, match=r"conditions\[0\] \(event.amount\)"):
        check("event.amount", "gt", 10, {"amount": "lots"})


def test_evaluation_keeps_every_value_seen():
    ok, evaluated = rules.evaluate(
        [
            {"field": "event.amount", "op": "gte", "value": 100},
            {"field": "client.country", "op": "eq", "value": "FR"},
        ],
        PAYLOAD,
        {"country": "DE"}.get,
    )
    assert ok is False
    assert [(e["actual"], e["result"]) for e in evaluated] == [(150_000, True), ("DE", False)]


def test_form_text_is_coerced_to_the_fields_type():
    assert rules.coerce_text(rules.INT, "gte", "150_000") == 150_000
    assert rules.coerce_text(rules.STR, "in", "DE, FR ,") == ["DE", "FR"]
    assert rules.coerce_text(rules.BOOL, "eq", "yes") is True
    assert rules.coerce_text(rules.INT, "gt", "1.5") == "1.5"  # left for validation to refuse


@pytest.mark.parametrize(
    ("condition", "field", "code"),
    [
        ({"field": "event.amout", "op": "gt", "value": 1}, "conditions[0].field", "unknown_field"),
        (
            {"field": "client.salary", "op": "gt", "value": 1},
            "conditions[0].field",
            "unknown_field",
        ),
        (
            {"field": "event.amount", "op": "like", "value": 1},
            "conditions[0].op",
            "unknown_operator",
        ),
        (
            {"field": "event.amount", "op": "gt", "value": "1.5"},
            "conditions[0].value",
            "not_an_integer",
        ),
        (
            {"field": "event.amount", "op": "gt", "value": 1.5},
            "conditions[0].value",
            "not_an_integer",
        ),
        (
            {"field": "event.amount", "op": "gt", "value": True},
            "conditions[0].value",
            "not_an_integer",
        ),
        (
            {"field": "event.currency", "op": "gt", "value": 3},
            "conditions[0].op",
            "operator_not_for_type",
        ),
        (
            {"field": "event.currency", "op": "in", "value": "EUR"},
            "conditions[0].value",
            "not_a_list",
        ),
        ({"field": "event.currency", "op": "in", "value": []}, "conditions[0].value", "not_a_list"),
        ({"field": "event.currency", "op": "eq", "value": ""}, "conditions[0].value", "not_text"),
        (
            {"field": "event.available", "op": "eq", "value": "yes"},
            "conditions[0].value",
            "not_a_boolean",
        ),
        (
            {"field": "client.segments", "op": "eq", "value": "vip"},
            "conditions[0].op",
            "operator_not_for_type",
        ),
        (
            {"field": "client.kyc_state", "op": "eq", "value": "verified"},
            "conditions[0].value",
            "unknown_choice",
        ),
    ],
)
def test_a_bad_condition_is_refused_with_its_field_and_rule(condition, field, code):
    with pytest.raises(ValidationError) as error:
        rules.validate_conditions("deposit.confirmed", [condition])
    assert (error.value.field, error.value.code) == (field, code)


@pytest.mark.django_db
def test_saving_a_rule_with_a_bad_condition_writes_nothing():
    bad = [
        {"field": "event.amount", "op": "gte", "value": 100},
        {"field": "event.amount", "op": "gte", "value": "a lot"},
    ]
    with pytest.raises(ValidationError) as error:
        rule("deposit.confirmed", NOTIFY, bad)
    assert error.value.field == "conditions[1].value"
    assert "whole number" in error.value.message
    assert Rule.objects.count() == 0 and RuleVersion.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("trigger", "actions", "field"),
    [
        ("deposit.arrived", NOTIFY, "trigger"),
        ("deposit.confirmed", [], "actions"),
        ("deposit.confirmed", [{"action": "format_disk"}], "actions[0].action"),
        ("deposit.confirmed", [{"action": "notify", "params": {}}], "actions[0].params.kind"),
        (
            "deposit.confirmed",
            [{"action": "notify", "params": {"kind": "lottery_won"}}],
            "actions[0].params.kind",
        ),
        (
            "kyc.approved",
            [
                {
                    "action": "create_trading_account",
                    "params": {"server": "sim", "group": "g", "leverage": "x"},
                }
            ],
            "actions[0].params.leverage",
        ),
        (
            "deposit.confirmed",
            [{"action": "notify", "params": {"kind": "deposit_received", "shell": "rm"}}],
            "actions[0].params",
        ),
    ],
)
def test_a_bad_trigger_or_action_is_refused(trigger, actions, field):
    with pytest.raises(ValidationError) as error:
        rule(trigger, actions)
    assert error.value.field == field
    assert Rule.objects.count() == 0


@pytest.mark.django_db
def test_country_values_are_normalised_and_typed_values_stored():
    saved = rule(
        "deposit.confirmed",
        NOTIFY,
        [
            {"field": "client.country", "op": "in", "value": ["de", "fr"]},
            {"field": "event.amount", "op": "gte", "value": 100_000},
        ],
    )
    assert saved.conditions == [
        {"field": "client.country", "op": "in", "value": ["DE", "FR"]},
        {"field": "event.amount", "op": "gte", "value": 100_000},
    ]
    assert saved.actions == [
        {"action": "notify", "params": {"kind": "deposit_received", "recipient": "client"}}
    ]


@pytest.mark.django_db
def test_each_change_is_a_new_audited_version():
    first = rule("deposit.confirmed", NOTIFY, name="Deposits")
    services.save_rule(
        rule_id=first.id,
        name="Big deposits",
        trigger="deposit.confirmed",
        conditions=[{"field": "event.amount", "op": "gte", "value": 1_000_000}],
        actions=NOTIFY,
        by=ADMIN,
    )
    services.set_enabled(first.id, False, by=ADMIN)
    versions = list(RuleVersion.objects.filter(rule=first).order_by("version"))
    assert [(v.version, v.name, v.enabled) for v in versions] == [
        (1, "Deposits", True),
        (2, "Big deposits", True),
        (3, "Big deposits", False),
    ]
    actions = list(
        AuditEntry.objects.filter(object_id=str(first.id))
        .order_by("seq")
        .values_list("action", flat=True)
    )
    assert actions == [
        "automations.rule_saved",
        "automations.rule_saved",
        "automations.rule_disabled",
    ]


@pytest.mark.django_db
def test_only_an_administrator_edits_rules():
    with pytest.raises(PermissionDenied):
        rule("deposit.confirmed", NOTIFY, by=user("finance"))
    assert rule("deposit.confirmed", NOTIFY, by=user("admin")).version == 1
