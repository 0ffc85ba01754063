"""The rule language: triggers, fields, operators — validated data, never evaluated code.

A condition is ``{"field": ..., "op": ..., "value": ...}``:

* ``field`` is ``event.<name>`` (a field of the trigger event's payload, from ``TRIGGERS``) or
  ``client.<fact>`` (a whitelisted fact about the client the event is about, ``FACTS``);
* ``op`` is one of ``OPERATORS`` (eq, ne, in, not_in, gt, gte, lt, lte, contains);
* ``value`` is typed: an integer (money is in minor units), a string, a boolean, or for
  ``in``/``not_in`` a non-empty list of those.

``validate_conditions`` refuses a bad condition with a ``ValidationError`` that names the
field (``conditions[2].value``) and the rule broken. ``evaluate`` returns each condition with
the value it saw and its result, for the run's audit trail.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext_lazy as _

from brokerdesk.core.errors import ValidationError

INT, STR, BOOL, LIST = "int", "str", "bool", "list"

_PAYMENT = {
    "payment_id": STR,
    "client_id": STR,
    "reference": STR,
    "amount": INT,
    "currency": STR,
    "actor": STR,
}
_KYC = {"client_id": STR, "from_state": STR, "to_state": STR, "actor": STR, "reason": STR}
_BONUS = {
    "bonus_id": STR,
    "client_id": STR,
    "currency": STR,
    "amount": INT,
    "reason": STR,
    "kind": STR,
    "campaign": STR,
}
_CHALLENGE = {"challenge_id": STR, "client_id": STR, "phase": STR, "rule": STR}


@dataclass(frozen=True)
class Trigger:
    """An event type rules may react to: its stream, a label and its payload fields."""

    type: str
    stream: str
    label: Any
    fields: Mapping[str, str]


TRIGGERS: dict[str, Trigger] = {
    t.type: t
    for t in (
        Trigger(
            "client.registered",
            "clients",
            _("A client registered"),
            {"client_id": STR, "kind": STR, "country": STR, "jurisdiction": STR},
        ),
        Trigger("kyc.submitted", "compliance", _("KYC submitted"), _KYC),
        Trigger("kyc.approved", "compliance", _("KYC approved"), _KYC),
        Trigger("kyc.rejected", "compliance", _("KYC rejected"), _KYC),
        Trigger("kyc.manual_review", "compliance", _("KYC sent to manual review"), _KYC),
        Trigger(
            "compliance.document_reviewed",
            "compliance",
            _("A document was reviewed"),
            {"client_id": STR, "document_id": STR, "doc_type": STR, "status": STR, "note": STR},
        ),
        Trigger(
            "compliance.flag_raised",
            "compliance",
            _("A compliance flag was raised"),
            {"client_id": STR, "kind": STR, "reason": STR},
        ),
        Trigger(
            "aml.alert_raised",
            "compliance",
            _("An AML alert was raised"),
            {"client_id": STR, "alert_id": STR, "rule": STR, "severity": STR},
        ),
        Trigger(
            "deposit.confirmed",
            "payments",
            _("A deposit was confirmed"),
            {**_PAYMENT, "available": BOOL, "provider": STR},
        ),
        Trigger("withdrawal.requested", "payments", _("A withdrawal was requested"), _PAYMENT),
        Trigger("withdrawal.approved", "payments", _("A withdrawal was approved"), _PAYMENT),
        Trigger("withdrawal.paid", "payments", _("A withdrawal was paid"), _PAYMENT),
        Trigger(
            "trading.account_opened",
            "trading",
            _("A trading account was opened"),
            {
                "account_id": STR,
                "client_id": STR,
                "server": STR,
                "login": INT,
                "currency": STR,
                "group": STR,
                "leverage": INT,
                "is_live": BOOL,
            },
        ),
        Trigger(
            "commission.accrued",
            "partners",
            _("A commission was accrued"),
            {
                "accrual_id": STR,
                "ib_id": STR,
                "kind": STR,
                "level": INT,
                "amount": INT,
                "currency": STR,
                "client_id": STR,
            },
        ),
        Trigger(
            "commission.paid",
            "partners",
            _("Commissions were paid"),
            {"payout_id": STR, "ib_id": STR, "amount": INT, "currency": STR, "accruals": INT},
        ),
        Trigger("bonus.granted", "bonuses", _("A bonus was granted"), _BONUS),
        Trigger("bonus.unlocked", "bonuses", _("A bonus was unlocked"), _BONUS),
        Trigger("bonus.forfeited", "bonuses", _("A bonus was forfeited"), _BONUS),
        Trigger("challenge.purchased", "propfirm", _("A challenge was purchased"), _CHALLENGE),
        Trigger("challenge.passed", "propfirm", _("A challenge was passed"), _CHALLENGE),
        Trigger("challenge.failed", "propfirm", _("A challenge was failed"), _CHALLENGE),
        Trigger(
            "ticket.opened",
            "support",
            _("A support ticket was opened"),
            {
                "ticket_id": STR,
                "client_id": STR,
                "category": STR,
                "queue": STR,
                "priority": STR,
                "status": STR,
            },
        ),
    )
}

STREAMS: tuple[str, ...] = tuple(sorted({t.stream for t in TRIGGERS.values()}))


@dataclass(frozen=True)
class Fact:
    """A whitelisted fact about the event's client: its type, label and allowed values."""

    name: str
    type: str
    label: Any
    choices: tuple[str, ...] = ()


KYC_STATES = (
    "lead",
    "documents_pending",
    "under_verification",
    "manual_review",
    "approved",
    "rejected",
    "restricted",
    "aml_review",
)

FACTS: dict[str, Fact] = {
    f.name: f
    for f in (
        Fact("country", STR, _("Country of residence (ISO code)")),
        Fact("nationality", STR, _("Nationality (ISO code)")),
        Fact("jurisdiction", STR, _("Jurisdiction")),
        Fact("kind", STR, _("Client kind"), ("individual", "corporate")),
        Fact("kyc_state", STR, _("KYC state"), KYC_STATES),
        Fact("segments", LIST, _("Segments")),
        Fact("tags", LIST, _("Tags")),
        Fact("open_flags", INT, _("Open compliance flags")),
        Fact("aml_alerts", INT, _("AML alerts")),
        Fact("risk_score", INT, _("Risk score (0 to 100)")),
    )
}

OPERATORS: dict[str, Any] = {
    "eq": _("equals"),
    "ne": _("does not equal"),
    "in": _("is one of"),
    "not_in": _("is not one of"),
    "gt": _("is greater than"),
    "gte": _("is at least"),
    "lt": _("is less than"),
    "lte": _("is at most"),
    "contains": _("contains"),
}
ORDERING = frozenset({"gt", "gte", "lt", "lte"})
MEMBERSHIP = frozenset({"in", "not_in"})


@dataclass(frozen=True)
class Condition:
    """A validated condition."""

    field: str
    op: str
    value: Any

    def as_dict(self) -> dict[str, Any]:
        """The stored form."""
        return {"field": self.field, "op": self.op, "value": self.value}


def field_type(trigger: str, field: str) -> str:
    """The type of ``field`` under ``trigger`` (``ValidationError`` when there is none)."""
    scope, _dot, name = field.partition(".")
    if scope == "event" and name in TRIGGERS[trigger].fields:
        return TRIGGERS[trigger].fields[name]
    if scope == "client" and name in FACTS:
        return FACTS[name].type
    raise ValidationError(
        f"Unknown field {field!r}: use event.<field> of the {trigger} event "
        f"({', '.join(TRIGGERS[trigger].fields)}) or client.<fact> ({', '.join(FACTS)}).",
        code="unknown_field",
        field="field",
    )


def field_choices(trigger: str) -> list[tuple[str, str]]:
    """Every field a condition of ``trigger`` may test, with its type (for the editor)."""
    fields = [(f"event.{name}", kind) for name, kind in TRIGGERS[trigger].fields.items()]
    return fields + [(f"client.{name}", fact.type) for name, fact in FACTS.items()]


def check_trigger(trigger: str) -> str:
    """``trigger`` when it is a known event type; ``ValidationError`` otherwise."""
    if trigger not in TRIGGERS:
        raise ValidationError(
            f"Unknown trigger {trigger!r}; one of {', '.join(TRIGGERS)}.",
            code="unknown_trigger",
            field="trigger",
        )
    return trigger


def _scalar(kind: str, value: Any, where: str) -> Any:
    if kind == INT:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(
                f"{where} must be a whole number (money is in minor units, e.g. 150000 "
                "for 1,500.00).",
                code="not_an_integer",
                field=where,
            )
        return value
    if kind == BOOL:
        if not isinstance(value, bool):
            raise ValidationError(
                f"{where} must be true or false.", code="not_a_boolean", field=where
            )
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{where} must be a non-empty text.", code="not_text", field=where)
    return value.strip()


def _check_choice(fact: Fact | None, value: Any, where: str) -> None:
    if fact is None or not fact.choices:
        return
    for item in value if isinstance(value, list) else [value]:
        if item not in fact.choices:
            raise ValidationError(
                f"{where}: {item!r} is not a {fact.name}; one of {', '.join(fact.choices)}.",
                code="unknown_choice",
                field=where,
            )


def validate_condition(trigger: str, raw: Any, index: int) -> Condition:
    """One condition checked against the trigger's fields and the operator's value type."""
    where = f"conditions[{index}]"
    if not isinstance(raw, Mapping):
        raise ValidationError(
            f"{where} must be an object with field, op and value.", code="invalid", field=where
        )
    field = str(raw.get("field") or "").strip()
    op = str(raw.get("op") or "").strip()
    value = raw.get("value")
    try:
        kind = field_type(trigger, field)
    except ValidationError as exc:
        raise ValidationError(exc.message, code=exc.code, field=f"{where}.field") from None
    if op not in OPERATORS:
        raise ValidationError(
            f"{where}.op: unknown operator {op!r}; one of {', '.join(OPERATORS)}.",
            code="unknown_operator",
            field=f"{where}.op",
        )
    fact = FACTS.get(field.partition(".")[2]) if field.startswith("client.") else None
    if op in ORDERING and kind != INT:
        raise ValidationError(
            f"{where}.op: {op} compares numbers, and {field} is not a number.",
            code="operator_not_for_type",
            field=f"{where}.op",
        )
    if op == "contains" and kind not in (STR, LIST):
        raise ValidationError(
            f"{where}.op: contains works on text and lists, and {field} is neither.",
            code="operator_not_for_type",
            field=f"{where}.op",
        )
    if kind == LIST and op not in ("contains",):
        raise ValidationError(
            f"{where}.op: {field} is a list; test it with contains.",
            code="operator_not_for_type",
            field=f"{where}.op",
        )
    item_kind = STR if kind == LIST or op == "contains" else kind
    if op in MEMBERSHIP:
        if not isinstance(value, list) or not value:
            raise ValidationError(
                f"{where}.value: {op} needs a non-empty list of values.",
                code="not_a_list",
                field=f"{where}.value",
            )
        typed: Any = [_scalar(item_kind, v, f"{where}.value") for v in value]
    else:
        typed = _scalar(item_kind, value, f"{where}.value")
    if field in ("client.country", "client.nationality"):
        typed = [v.upper() for v in typed] if isinstance(typed, list) else typed.upper()
    _check_choice(fact, typed, f"{where}.value")
    return Condition(field, op, typed)


def validate_conditions(trigger: str, raw: Any) -> list[Condition]:
    """Every condition of a rule, validated (the first bad one raises)."""
    check_trigger(trigger)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValidationError("Conditions must be a list.", code="invalid", field="conditions")
    return [validate_condition(trigger, item, i) for i, item in enumerate(raw)]


def coerce_text(kind: str, op: str, text: str) -> Any:
    """A value typed in a form, converted to the type the field and operator need.

    Lists are comma-separated; numbers must be whole (a text that is not stays text, so the
    validation reports it against the field)."""
    text = (text or "").strip()
    if op in MEMBERSHIP:
        return [_coerce_one(kind, part.strip()) for part in text.split(",") if part.strip()]
    return _coerce_one(STR if kind == LIST else kind, text)


def _coerce_one(kind: str, text: str) -> Any:
    if kind == INT:
        try:
            return int(text.replace("_", ""))
        except ValueError:
            return text
    if kind == BOOL:
        lowered = text.lower()
        if lowered in ("true", "yes", "1"):
            return True
        if lowered in ("false", "no", "0"):
            return False
        return text
    return text


# ---------------------------------------------------------------------------- evaluation


class ConditionTypeError(Exception):
    """The event carried a value of another type than the rule expects (misconfiguration)."""


def lookup(field: str, payload: Mapping[str, Any], facts: Callable[[str], Any]) -> Any:
    """The value of ``field``: from the payload (dotted path) or the client's facts."""
    scope, _dot, path = field.partition(".")
    if scope == "client":
        return facts(path)
    value: Any = payload
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if actual is None:
        return op in ("ne", "not_in")
    if op == "eq":
        return bool(actual == expected)
    if op == "ne":
        return bool(actual != expected)
    if op == "in":
        return actual in expected
    if op == "not_in":
        return actual not in expected
    if op == "contains":
        if isinstance(actual, list | tuple | str):
            return expected in actual
        raise ConditionTypeError(f"contains needs text or a list, got {actual!r}")
    if isinstance(actual, bool) or not isinstance(actual, int):
        raise ConditionTypeError(f"{op} needs a whole number, got {actual!r}")
    return {
        "gt": actual > expected,
        "gte": actual >= expected,
        "lt": actual < expected,
        "lte": actual <= expected,
    }[op]


def evaluate(
    conditions: list[dict[str, Any]],
    payload: Mapping[str, Any],
    facts: Callable[[str], Any],
) -> tuple[bool, list[dict[str, Any]]]:
    """All conditions (AND) with the values seen; a type mismatch raises
    ``ConditionTypeError`` naming the condition."""
    evaluated = []
    for i, c in enumerate(conditions):
        actual = lookup(c["field"], payload, facts)
        if isinstance(actual, tuple):
            actual = list(actual)
        try:
            result = _compare(c["op"], actual, c["value"])
        except ConditionTypeError as exc:
            raise ConditionTypeError(f"conditions[{i}] ({c['field']}): {exc}") from None
        evaluated.append({**c, "actual": actual, "result": result})
    return all(e["result"] for e in evaluated), evaluated
