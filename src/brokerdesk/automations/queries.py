"""Read side of automations: rules, versions, the runs log and the exceptions queue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from brokerdesk.automations.models import Rule, RuleVersion, Run, RunStatus
from brokerdesk.core.errors import NotFound


@dataclass(frozen=True)
class RuleView:
    """A rule as screens and the API show it."""

    id: UUID
    name: str
    trigger: str
    enabled: bool
    version: int
    conditions: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    updated_by: str
    updated_at: datetime


@dataclass(frozen=True)
class RunView:
    """A run as screens and the API show it."""

    id: UUID
    rule_id: UUID
    rule_name: str
    rule_version: int
    event_id: str
    event_type: str
    event_payload: dict[str, Any]
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
    updated_at: datetime


def rule_view(rule: Rule) -> RuleView:
    """The read shape of a rule."""
    return RuleView(
        rule.id,
        rule.name,
        rule.trigger,
        rule.enabled,
        rule.version,
        list(rule.conditions),
        list(rule.actions),
        rule.updated_by,
        rule.updated_at,
    )


def run_view(run: Run) -> RunView:
    """The read shape of a run."""
    return RunView(
        run.id,
        run.rule_id,
        run.rule.name,
        run.rule_version,
        run.event_id,
        run.event_type,
        dict(run.event_payload),
        run.client_id,
        run.status,
        list(run.conditions),
        list(run.results),
        list(run.override_roles),
        run.error,
        run.attempts,
        run.next_retry_at,
        run.handled_by,
        run.handled_note,
        run.created_at,
        run.updated_at,
    )


def all_rules() -> list[RuleView]:
    """Every rule, by trigger then name."""
    return [rule_view(r) for r in Rule.objects.order_by("trigger", "name", "id")]


def get_rule(rule_id: UUID | str) -> RuleView:
    """One rule, or ``NotFound``."""
    rule = Rule.objects.filter(pk=rule_id).first()
    if rule is None:
        raise NotFound("No such rule.", code="rule_not_found", field="rule_id")
    return rule_view(rule)


def rule_versions(rule_id: UUID | str) -> list[dict[str, Any]]:
    """A rule's versions, newest first (who saved what, when)."""
    return [
        {
            "version": v.version,
            "name": v.name,
            "enabled": v.enabled,
            "conditions": v.conditions,
            "actions": v.actions,
            "saved_by": v.saved_by,
            "saved_at": v.saved_at,
        }
        for v in RuleVersion.objects.filter(rule_id=rule_id).order_by("-version")
    ]


def runs(
    *,
    status: str | None = None,
    rule_id: UUID | str | None = None,
    client_id: UUID | str | None = None,
    limit: int = 100,
) -> list[RunView]:
    """The runs log, newest first, optionally narrowed."""
    qs = Run.objects.select_related("rule").order_by("-created_at", "-id")
    if status:
        qs = qs.filter(status=status)
    if rule_id:
        qs = qs.filter(rule_id=rule_id)
    if client_id:
        qs = qs.filter(client_id=client_id)
    return [run_view(r) for r in qs[: max(1, min(limit, 500))]]


def exceptions(*, limit: int = 100) -> list[RunView]:
    """The exceptions queue: failed runs, oldest first (the longest waiting on top)."""
    qs = Run.objects.select_related("rule").filter(status=RunStatus.FAILED)
    return [run_view(r) for r in qs.order_by("created_at", "id")[: max(1, min(limit, 500))]]


def exception_count() -> int:
    """How many runs wait in the exceptions queue."""
    return Run.objects.filter(status=RunStatus.FAILED).count()


def get_run(run_id: UUID | str) -> RunView:
    """One run, or ``NotFound``."""
    run = Run.objects.select_related("rule").filter(pk=run_id).first()
    if run is None:
        raise NotFound("No such run.", code="run_not_found", field="run_id")
    return run_view(run)
