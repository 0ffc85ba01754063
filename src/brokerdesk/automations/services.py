"""Automations commands: the only writers of rules and runs.

* ``save_rule`` / ``set_enabled``: staff (admin) configure rules; each change is a new
  version, audited.
* ``apply_rules``: the consumer hands every event here; each enabled rule of that trigger runs
  at most once per event (``Run`` is unique per rule and event). Conditions are evaluated and
  kept with the values seen; each action runs in its own savepoint; a failing action stops the
  run, which lands in the exceptions queue (status ``failed``) with an automatic retry.
* ``retry_run`` re-runs the actions not yet done; ``handle_run`` is the manual fallback: a
  person did the work (or decided it is not needed) and says so in a note.

Every run that acted, every retry and every manual resolution is in the audit log (the event,
the rule version, the conditions with their values, the changes, and who may override them).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import structlog
from django.db import IntegrityError, transaction

from brokerdesk.automations import facts, rules
from brokerdesk.automations.actions import ACTIONS, ActionContext, validate_actions
from brokerdesk.automations.events import AutomationRan
from brokerdesk.automations.models import Rule, RuleVersion, Run, RunStatus
from brokerdesk.core import audit, clock
from brokerdesk.core.consumers import TRANSIENT_ERRORS
from brokerdesk.core.errors import DomainError, IllegalTransition, NotFound, ValidationError
from brokerdesk.core.events import emit
from brokerdesk.staff.roles import Role, actor_label, require_role

log = structlog.get_logger(__name__)

ACTOR = "system:automations"
AUTO_RETRIES = 3  # automatic attempts before a failed run waits for a person
RETRY_BACKOFF = timedelta(minutes=1)  # doubled after each attempt


def rule_actor(rule_id: UUID | str) -> str:
    """The actor label a rule's changes carry (a rule never re-triggers itself)."""
    return f"{ACTOR}:{rule_id}"


def _staff_or_system(by: Any, *roles: Role | str) -> str:
    if isinstance(by, str):
        if by.startswith("system:"):
            return by
        raise ValidationError("A staff user or a system actor is required.", field="by")
    require_role(by, *roles)
    return actor_label(by)


# ---------------------------------------------------------------------------- rules


def _clean_name(name: str) -> str:
    text = (name or "").strip()
    if not text:
        raise ValidationError("A rule needs a name.", code="required", field="name")
    if len(text) > 200:
        raise ValidationError("The name is too long (200 at most).", code="too_long", field="name")
    return text


def save_rule(
    *,
    name: str,
    trigger: str,
    conditions: Any,
    actions: Any,
    by: Any,
    enabled: bool = True,
    rule_id: UUID | str | None = None,
) -> Rule:
    """Create a rule, or save a new version of ``rule_id`` (admin). Nothing is written when a
    condition or an action is invalid: the error names the field and the rule broken."""
    actor = _staff_or_system(by, Role.ADMIN)
    name = _clean_name(name)
    trigger = rules.check_trigger(str(trigger or ""))
    checked = [c.as_dict() for c in rules.validate_conditions(trigger, conditions)]
    cleaned_actions = validate_actions(actions)
    now = clock.now()
    with transaction.atomic():
        if rule_id is None:
            rule = Rule(created_by=actor, created_at=now, version=1)
            before: dict[str, Any] = {}
        else:
            rule = _locked_rule(rule_id)
            before = _snapshot(rule)
            rule.version += 1
        rule.name, rule.trigger, rule.enabled = name, trigger, bool(enabled)
        rule.conditions, rule.actions = checked, cleaned_actions
        rule.updated_by, rule.updated_at = actor, now
        rule.save()
        _keep_version(rule, actor, now)
        audit.record(
            actor=actor,
            action="automations.rule_saved",
            object_type="automation_rule",
            object_id=str(rule.id),
            before=before,
            after=_snapshot(rule),
        )
        return rule


def set_enabled(rule_id: UUID | str, enabled: bool, *, by: Any) -> Rule:
    """Switch a rule on or off (a new version; admin)."""
    actor = _staff_or_system(by, Role.ADMIN)
    with transaction.atomic():
        rule = _locked_rule(rule_id)
        if rule.enabled == enabled:
            return rule
        before = _snapshot(rule)
        rule.enabled, rule.version = enabled, rule.version + 1
        rule.updated_by, rule.updated_at = actor, clock.now()
        rule.save()
        _keep_version(rule, actor, rule.updated_at)
        audit.record(
            actor=actor,
            action="automations.rule_enabled" if enabled else "automations.rule_disabled",
            object_type="automation_rule",
            object_id=str(rule.id),
            before=before,
            after=_snapshot(rule),
        )
        return rule


def _locked_rule(rule_id: UUID | str) -> Rule:
    rule = Rule.objects.select_for_update().filter(pk=rule_id).first()
    if rule is None:
        raise NotFound("No such rule.", code="rule_not_found", field="rule_id")
    return rule


def _snapshot(rule: Rule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "version": rule.version,
        "trigger": rule.trigger,
        "enabled": rule.enabled,
        "conditions": rule.conditions,
        "actions": rule.actions,
    }


def _keep_version(rule: Rule, actor: str, at: datetime) -> None:
    RuleVersion.objects.create(
        rule=rule,
        version=rule.version,
        name=rule.name,
        trigger=rule.trigger,
        enabled=rule.enabled,
        conditions=rule.conditions,
        actions=rule.actions,
        saved_by=actor,
        saved_at=at,
    )


# ---------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Event:
    """The event a run is about (as the bus delivered it)."""

    id: str
    type: str
    payload: dict[str, Any]
    occurred_at: str = ""

    @property
    def client_id(self) -> str | None:
        """The client the event is about, if its payload names one."""
        value = self.payload.get("client_id")
        return str(value) if value else None


def rules_for(event_type: str) -> list[Rule]:
    """The enabled rules triggered by ``event_type``, oldest first."""
    return list(Rule.objects.filter(trigger=event_type, enabled=True).order_by("created_at", "id"))


def apply_rules(event: Event, *, candidates: list[Rule] | None = None) -> list[Run]:
    """Run every enabled rule of the event's type on it, once each (call inside the
    consumer's transaction). Returns the runs made now (not the ones already there)."""
    made = []
    for rule in rules_for(event.type) if candidates is None else candidates:
        if event.payload.get("actor") == rule_actor(rule.id):
            continue  # the rule's own change coming back: never loop
        run = _apply(rule, event)
        if run is not None:
            made.append(run)
    return made


def _apply(rule: Rule, event: Event) -> Run | None:
    if Run.objects.filter(rule=rule, event_id=event.id).exists():
        return None
    now = clock.now()
    client = event.client_id
    run = Run(
        rule=rule,
        rule_version=rule.version,
        event_id=event.id,
        event_type=event.type,
        event_payload=event.payload,
        event_occurred_at=event.occurred_at,
        client_id=_uuid_or_none(client),
        status=RunStatus.SKIPPED,
        override_roles=_override_roles(rule.actions),
        created_at=now,
        updated_at=now,
    )
    try:
        matched, evaluated = rules.evaluate(rule.conditions, event.payload, facts.facts_of(client))
    except (rules.ConditionTypeError, DomainError) as exc:
        run.status, run.error = RunStatus.FAILED, f"conditions: {_describe(exc)}"
        # a misconfigured rule needs a person; a fact not readable yet may be there later
        misconfigured = isinstance(exc, rules.ConditionTypeError)
        run.next_retry_at = None if misconfigured else now + RETRY_BACKOFF
        return _insert(run, rule.actions, audit_it=True)
    run.conditions = evaluated
    if not matched:
        return _insert(run, rule.actions, audit_it=False)
    run.results = [{"action": a["action"], "status": "pending"} for a in rule.actions]
    inserted = _insert(run, rule.actions, audit_it=False)
    if inserted is None:
        return None
    _execute(inserted, rule.actions, rule.name)
    _finish(inserted, "automations.run", ACTOR)
    return inserted


def _uuid_or_none(value: str | None) -> UUID | None:
    try:
        return UUID(value) if value else None
    except ValueError:
        return None


def _override_roles(actions: list[dict[str, Any]]) -> list[str]:
    roles: list[str] = []
    for a in actions:
        spec = ACTIONS.get(a["action"])
        for role in spec.override_roles if spec else ():
            if role not in roles:
                roles.append(role)
    return roles


def _insert(run: Run, actions: list[dict[str, Any]], *, audit_it: bool) -> Run | None:
    """Write the run row once (a concurrent twin wins: ``None``)."""
    try:
        with transaction.atomic():
            run.save(force_insert=True)
    except IntegrityError:
        return None
    if audit_it:
        _finish(run, "automations.run", ACTOR, save=False)
    return run


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DomainError):
        where = f" (field {exc.field})" if exc.field else ""
        return f"{exc.code}: {exc.message}{where}"
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()[:2000]


def _execute(run: Run, actions: list[dict[str, Any]], rule_name: str) -> None:
    """Run the actions not yet done, in order, each in its own savepoint; stop at a failure."""
    results = list(run.results)
    run.error = ""
    for index, a in enumerate(actions):
        if results[index].get("status") == "done":
            continue
        ctx = ActionContext(
            rule_id=run.rule_id,
            rule_name=rule_name,
            rule_version=run.rule_version,
            event_id=run.event_id,
            event_type=run.event_type,
            payload=run.event_payload,
            index=index,
            actor=rule_actor(run.rule_id),
        )
        try:
            with transaction.atomic():
                changes = ACTIONS[a["action"]].run(ctx, dict(a["params"]))
        except TRANSIENT_ERRORS:
            raise  # the database failed, not the action: the consumer delivers it again
        except Exception as exc:
            results[index] = {"action": a["action"], "status": "failed", "error": _describe(exc)}
            run.error = f"{a['action']}: {_describe(exc)}"
            log.warning("automation_action_failed", rule=str(run.rule_id), run=str(run.id))
            break
        results[index] = {"action": a["action"], "status": "done", "changes": changes}
    run.results = results
    failed = any(r.get("status") != "done" for r in results)
    run.status = RunStatus.FAILED if failed else RunStatus.SUCCEEDED
    run.next_retry_at = (
        clock.now() + RETRY_BACKOFF * 2 ** (run.attempts - 1)
        if failed and run.attempts < AUTO_RETRIES
        else None
    )


def _finish(run: Run, action: str, actor: str, *, save: bool = True, note: str = "") -> None:
    run.updated_at = clock.now()
    if save:
        run.save()
    audit.record(
        actor=actor,
        action=action,
        object_type="automation_run",
        object_id=str(run.id),
        reason=note or f"{run.event_type} {run.event_id}",
        after={
            "rule_id": str(run.rule_id),
            "rule_version": run.rule_version,
            "event": {"id": run.event_id, "type": run.event_type, "payload": run.event_payload},
            "conditions": run.conditions,
            "results": run.results,
            "status": run.status,
            "attempt": run.attempts,
            "override_roles": run.override_roles,
            "error": run.error,
        },
    )
    emit(
        AutomationRan(
            run_id=str(run.id),
            rule_id=str(run.rule_id),
            rule_version=run.rule_version,
            event_id=run.event_id,
            event_type=run.event_type,
            client_id=str(run.client_id) if run.client_id else None,
            status=run.status,
            attempt=run.attempts,
        )
    )


def _locked_run(run_id: UUID | str) -> Run:
    run = Run.objects.select_for_update().select_related("rule").filter(pk=run_id).first()
    if run is None:
        raise NotFound("No such run.", code="run_not_found", field="run_id")
    return run


def _version_actions(run: Run) -> tuple[list[dict[str, Any]], str]:
    """The actions and name of the rule at the run's version."""
    snap = RuleVersion.objects.filter(rule_id=run.rule_id, version=run.rule_version).first()
    if snap is None:
        return run.rule.actions, run.rule.name
    return snap.actions, snap.name


def retry_run(run_id: UUID | str, *, by: Any) -> Run:
    """Run a failed run's remaining actions again (staff who may override it, or the retry
    job). Conditions are not evaluated again: they held when the event arrived."""
    with transaction.atomic():
        run = _locked_run(run_id)
        actor = _staff_or_system(by, *run.override_roles)
        if run.status != RunStatus.FAILED:
            raise IllegalTransition(
                f"Only a failed run can be retried; this one is {run.status}.",
                code="not_failed",
                field="run_id",
            )
        actions, name = _version_actions(run)
        if not run.results:  # the conditions themselves failed: evaluate them now
            try:
                matched, evaluated = rules.evaluate(
                    run.rule.conditions, run.event_payload, facts.facts_of(_str(run.client_id))
                )
            except (rules.ConditionTypeError, DomainError) as exc:
                run.attempts += 1
                run.error = f"conditions: {_describe(exc)}"
                run.next_retry_at = (
                    clock.now() + RETRY_BACKOFF * 2 ** (run.attempts - 1)
                    if run.attempts < AUTO_RETRIES and isinstance(exc, DomainError)
                    else None
                )
                _finish(run, "automations.retry", actor)
                return run
            run.conditions = evaluated
            if not matched:
                run.status, run.error = RunStatus.SKIPPED, ""
                _finish(run, "automations.retry", actor)
                return run
            actions, name = run.rule.actions, run.rule.name
            run.rule_version = run.rule.version
            run.results = [{"action": a["action"], "status": "pending"} for a in actions]
        run.attempts += 1
        _execute(run, actions, name)
        _finish(run, "automations.retry", actor)
        return run


def _str(value: UUID | None) -> str | None:
    return str(value) if value else None


def retry_due(*, now: datetime | None = None, limit: int = 100) -> int:
    """Retry the failed runs whose automatic retry is due; return how many were retried."""
    moment = now or clock.now()
    due = list(
        Run.objects.filter(status=RunStatus.FAILED, next_retry_at__lte=moment)
        .order_by("next_retry_at")
        .values_list("pk", flat=True)[:limit]
    )
    for run_id in due:
        try:
            retry_run(run_id, by=f"{ACTOR}:retry")
        except DomainError as exc:
            log.warning("automation_retry_refused", run=str(run_id), error=exc.message)
    return len(due)


def handle_run(run_id: UUID | str, *, by: Any, note: str) -> Run:
    """The manual fallback: a person did what the automation could not (or decided it is not
    needed) and says so; the run leaves the exceptions queue. Needs a note."""
    text = (note or "").strip()
    if not text:
        raise ValidationError(
            "Say what was done instead (a note is required).", code="note_required", field="note"
        )
    with transaction.atomic():
        run = _locked_run(run_id)
        if isinstance(by, str):
            raise ValidationError("A person must handle a run.", code="person_required", field="by")
        require_role(by, *run.override_roles)
        actor = actor_label(by)
        if run.status != RunStatus.FAILED:
            raise IllegalTransition(
                f"Only a failed run can be handled; this one is {run.status}.",
                code="not_failed",
                field="run_id",
            )
        run.status, run.next_retry_at = RunStatus.HANDLED, None
        run.handled_by, run.handled_note = actor, text
        _finish(run, "automations.handled", actor, note=text)
        return run
