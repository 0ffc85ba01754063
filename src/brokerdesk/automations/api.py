"""The automations API, mounted at /api/v1/automations/: the rule catalogue (triggers,
fields, operators, actions), rules (administrators write), the runs log and the exceptions
queue (retry and manual resolution by the roles that may override a run)."""

from datetime import datetime
from typing import Any
from uuid import UUID

from django.http import HttpRequest
from ninja import Router, Schema, Status

from brokerdesk.automations import queries, rules, services
from brokerdesk.automations.actions import ACTIONS
from brokerdesk.staff.api import domain_errors, staff_only
from brokerdesk.staff.roles import STAFF_ROLES, Role

router = Router(tags=["automations"])
STAFF = staff_only(*STAFF_ROLES)
ADMIN = staff_only(Role.ADMIN)


class RuleIn(Schema):
    name: str
    trigger: str
    conditions: list[dict[str, Any]] = []
    actions: list[dict[str, Any]]
    enabled: bool = True


class EnabledIn(Schema):
    enabled: bool


class NoteIn(Schema):
    note: str


class RuleOut(Schema):
    id: UUID
    name: str
    trigger: str
    enabled: bool
    version: int
    conditions: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    updated_by: str
    updated_at: datetime


class RunOut(Schema):
    id: UUID
    rule_id: UUID
    rule_name: str
    rule_version: int
    event_id: str
    event_type: str
    client_id: UUID | None
    status: str
    conditions: list[dict[str, Any]]
    results: list[dict[str, Any]]
    override_roles: list[str]
    error: str
    attempts: int
    next_retry_at: datetime | None
    handled_by: str
    handled_note: str
    created_at: datetime


@router.get("/catalogue", auth=STAFF)
def catalogue(request: HttpRequest) -> dict[str, Any]:
    """What a rule can say: triggers and their fields, client facts, operators, actions."""
    return {
        "triggers": {
            t.type: {"label": str(t.label), "fields": dict(t.fields)}
            for t in rules.TRIGGERS.values()
        },
        "facts": {f.name: {"label": str(f.label), "type": f.type} for f in rules.FACTS.values()},
        "operators": {code: str(label) for code, label in rules.OPERATORS.items()},
        "actions": {
            a.name: {
                "label": str(a.label),
                "override_roles": list(a.override_roles),
                "params": [
                    {
                        "name": p.name,
                        "type": p.type,
                        "required": p.required,
                        "choices": list(p.codes),
                    }
                    for p in a.params
                ],
            }
            for a in ACTIONS.values()
        },
    }


@router.get("/rules", response=list[RuleOut], auth=STAFF)
def list_rules(request: HttpRequest) -> Any:
    """Every rule."""
    return queries.all_rules()


@router.post("/rules", response={201: RuleOut}, auth=ADMIN)
@domain_errors
def create_rule(request: HttpRequest, payload: RuleIn) -> Any:
    """Create a rule (a bad condition or action: 400 naming the field)."""
    rule = services.save_rule(by=request.user, **payload.dict())
    return Status(201, queries.rule_view(rule))


@router.put("/rules/{rule_id}", response=RuleOut, auth=ADMIN)
@domain_errors
def update_rule(request: HttpRequest, rule_id: UUID, payload: RuleIn) -> Any:
    """Save a new version of a rule."""
    return queries.rule_view(services.save_rule(rule_id=rule_id, by=request.user, **payload.dict()))


@router.post("/rules/{rule_id}/enabled", response=RuleOut, auth=ADMIN)
@domain_errors
def enable_rule(request: HttpRequest, rule_id: UUID, payload: EnabledIn) -> Any:
    """Switch a rule on or off."""
    return queries.rule_view(services.set_enabled(rule_id, payload.enabled, by=request.user))


@router.get("/runs", response=list[RunOut], auth=STAFF)
def list_runs(
    request: HttpRequest,
    status: str | None = None,
    rule_id: UUID | None = None,
    client_id: UUID | None = None,
    limit: int = 100,
) -> Any:
    """The runs log, newest first."""
    return queries.runs(status=status, rule_id=rule_id, client_id=client_id, limit=limit)


@router.get("/exceptions", response=list[RunOut], auth=STAFF)
def list_exceptions(request: HttpRequest) -> Any:
    """The exceptions queue (failed runs), oldest first."""
    return queries.exceptions()


@router.post("/runs/{run_id}/retry", response=RunOut, auth=STAFF)
@domain_errors
def retry(request: HttpRequest, run_id: UUID) -> Any:
    """Retry a failed run's remaining actions."""
    services.retry_run(run_id, by=request.user)
    return queries.get_run(run_id)


@router.post("/runs/{run_id}/handle", response=RunOut, auth=STAFF)
@domain_errors
def handle(request: HttpRequest, run_id: UUID, payload: NoteIn) -> Any:
    """Mark a failed run handled by hand (a note is required)."""
    services.handle_run(run_id, by=request.user, note=payload.note)
    return queries.get_run(run_id)
