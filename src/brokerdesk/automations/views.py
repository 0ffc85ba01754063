"""Back-office pages of automations: rules, the no-code rule editor, the runs log and the
exceptions queue. Every staff role may read them; only an administrator edits rules; a failed
run is retried or handled by someone holding a role that may override its actions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from brokerdesk.automations import queries, rules, services
from brokerdesk.automations.actions import ACTIONS, Action
from brokerdesk.automations.models import RunStatus
from brokerdesk.backoffice.access import staff_page
from brokerdesk.core.errors import DomainError, NotFound, PermissionDenied
from brokerdesk.core.ids import new_id
from brokerdesk.staff.roles import Role, has_role

STATUS_TONES = {"succeeded": "success", "failed": "danger", "handled": "info", "skipped": "neutral"}


# ---------------------------------------------------------------------------- editor rows


@dataclass
class ParamField:
    """One parameter input of an action row."""

    name: str
    label: Any
    type: str
    required: bool
    choices: tuple[tuple[str, Any], ...]
    value: str


@dataclass
class ConditionRow:
    """A condition row of the editor (what was typed, and its error if any)."""

    row: str
    field: str = ""
    op: str = "eq"
    value: str = ""
    error: str = ""


@dataclass
class ActionRow:
    """An action row of the editor."""

    row: str
    action: str = ""
    params: list[ParamField] = field(default_factory=list)
    error: str = ""


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    return "" if value is None else str(value)


def _param_fields(spec: Action | None, values: dict[str, Any]) -> list[ParamField]:
    if spec is None:
        return []
    return [
        ParamField(
            p.name,
            p.label,
            p.type,
            p.required,
            p.choices,
            _text(values.get(p.name, p.default if p.default is not None else "")),
        )
        for p in spec.params
    ]


def _new_row() -> str:
    return new_id().hex[-8:]


def _rows_in_order(data: QueryDict, prefix: str) -> list[str]:
    """Row ids of ``prefix`` in the order the form posted them (the page's order)."""
    seen: list[str] = []
    for key in data:
        if key.startswith(prefix):
            row = key[len(prefix) :].split("-", 1)[0]
            if row and row not in seen:
                seen.append(row)
    return seen


def _posted_conditions(data: QueryDict, trigger: str) -> tuple[list[ConditionRow], list[Any]]:
    rows, conditions = [], []
    for row in _rows_in_order(data, "cond-"):
        c = ConditionRow(
            row,
            data.get(f"cond-{row}-field", "").strip(),
            data.get(f"cond-{row}-op", "eq"),
            data.get(f"cond-{row}-value", ""),
        )
        if not c.field and not c.value.strip():
            continue  # an empty row is ignored
        rows.append(c)
        try:
            kind = rules.field_type(trigger, c.field) if trigger in rules.TRIGGERS else rules.STR
        except DomainError:
            kind = rules.STR
        conditions.append(
            {"field": c.field, "op": c.op, "value": rules.coerce_text(kind, c.op, c.value)}
        )
    return rows, conditions


def _posted_actions(data: QueryDict) -> tuple[list[ActionRow], list[Any]]:
    rows, actions = [], []
    for row in _rows_in_order(data, "act-"):
        name = data.get(f"act-{row}-action", "")
        if not name:
            continue
        spec = ACTIONS.get(name)
        params = {
            p.name: data.get(f"act-{row}-p-{p.name}", "" if p.type != "bool" else "false")
            for p in (spec.params if spec else ())
        }
        rows.append(ActionRow(row, name, _param_fields(spec, params)))
        actions.append({"action": name, "params": params})
    return rows, actions


def _place_error(error: DomainError, conds: list[ConditionRow], acts: list[ActionRow]) -> bool:
    """Show the error on the row it names (``conditions[2].value``); False when on none."""
    where = error.field or ""
    for prefix, rows in (("conditions[", conds), ("actions[", acts)):
        if where.startswith(prefix):
            try:
                index = int(where[len(prefix) :].split("]", 1)[0])
            except ValueError:
                return False
            if 0 <= index < len(rows):
                rows[index].error = error.message
                return True
    return False


def _stored_rows(rule: queries.RuleView | None) -> tuple[list[ConditionRow], list[ActionRow]]:
    if rule is None:
        return [ConditionRow(_new_row())], [ActionRow(_new_row())]
    conds = [
        ConditionRow(_new_row(), c["field"], c["op"], _text(c["value"])) for c in rule.conditions
    ]
    acts = [
        ActionRow(_new_row(), a["action"], _param_fields(ACTIONS.get(a["action"]), a["params"]))
        for a in rule.actions
    ]
    return conds, acts


def _editor_context(**extra: Any) -> dict[str, Any]:
    return {
        "triggers": [(t.type, t.label) for t in rules.TRIGGERS.values()],
        "operators": list(rules.OPERATORS.items()),
        "actions": [(a.name, a.label) for a in ACTIONS.values()],
        "facts": rules.FACTS,
        **extra,
    }


# ---------------------------------------------------------------------------- pages


@dataclass(frozen=True)
class RuleRow:
    """A rule in the list, with the labels people read."""

    rule: queries.RuleView
    trigger_label: Any
    action_labels: list[Any]


def _action_label(name: str) -> Any:
    spec = ACTIONS.get(name)
    return spec.label if spec else name


@staff_page()
def rule_list(request: HttpRequest) -> HttpResponse:
    """Every rule with its trigger, state and version."""
    rows = [
        RuleRow(
            r,
            rules.TRIGGERS[r.trigger].label if r.trigger in rules.TRIGGERS else r.trigger,
            [_action_label(a["action"]) for a in r.actions],
        )
        for r in queries.all_rules()
    ]
    return render(
        request,
        "automations/rules.html",
        {
            "rules": rows,
            "can_edit": has_role(request.user, Role.ADMIN),
            "exception_count": queries.exception_count(),
        },
    )


@staff_page(Role.ADMIN)
def rule_new(request: HttpRequest) -> HttpResponse:
    """The no-code editor for a new rule."""
    return _editor(request, None)


@staff_page()
def rule_detail(request: HttpRequest, rule_id: UUID) -> HttpResponse:
    """A rule: the editor for an administrator, a read-only summary for other staff."""
    try:
        rule = queries.get_rule(rule_id)
    except NotFound:
        raise Http404 from None
    if has_role(request.user, Role.ADMIN):
        return _editor(request, rule)
    if request.method == "POST":
        return render(request, "backoffice/forbidden.html", {"needed_roles": ["admin"]}, status=403)
    return render(
        request,
        "automations/rule_view.html",
        {
            "rule": rule,
            "trigger_label": rules.TRIGGERS[rule.trigger].label,
            "operators": rules.OPERATORS,
            "action_labels": {a.name: a.label for a in ACTIONS.values()},
            "versions": queries.rule_versions(rule.id),
            "runs": queries.runs(rule_id=rule.id, limit=20),
            "tones": STATUS_TONES,
        },
    )


def _editor(request: HttpRequest, rule: queries.RuleView | None) -> HttpResponse:
    status = 200
    error = ""
    if request.method == "POST":
        data = request.POST
        trigger = data.get("trigger", "")
        conds, conditions = _posted_conditions(data, trigger)
        acts, actions = _posted_actions(data)
        name, enabled = data.get("name", ""), data.get("enabled") == "on"
        try:
            saved = services.save_rule(
                rule_id=rule.id if rule else None,
                name=name,
                trigger=trigger,
                conditions=conditions,
                actions=actions,
                enabled=enabled,
                by=request.user,
            )
        except DomainError as exc:
            if not _place_error(exc, conds, acts):
                error = exc.message
            status = 400
            if not conds:
                conds = [ConditionRow(_new_row())]
            if not acts:
                acts = [ActionRow(_new_row())]
        else:
            messages.success(request, _("The rule was saved."))
            return redirect("automations:rule", rule_id=saved.id)
    else:
        conds, acts = _stored_rows(rule)
        trigger = rule.trigger if rule else ""
        name, enabled = (rule.name, rule.enabled) if rule else ("", True)
    context = _editor_context(
        rule=rule,
        name=name,
        trigger=trigger,
        enabled=enabled,
        conditions=conds,
        action_rows=acts,
        field_options=rules.field_choices(trigger) if trigger in rules.TRIGGERS else [],
        error=error,
        versions=queries.rule_versions(rule.id) if rule else [],
    )
    return render(request, "automations/rule_edit.html", context, status=status)


@staff_page(Role.ADMIN)
def rule_toggle(request: HttpRequest, rule_id: UUID) -> HttpResponse:
    """Switch a rule on or off (POST)."""
    if request.method != "POST":
        return redirect("automations:rule", rule_id=rule_id)
    try:
        rule = services.set_enabled(rule_id, request.POST.get("enabled") == "1", by=request.user)
    except NotFound:
        raise Http404 from None
    if rule.enabled:
        messages.success(request, _("The rule is on."))
    else:
        messages.success(request, _("The rule is off."))
    return redirect("automations:rules")


@staff_page(Role.ADMIN)
def editor_condition(request: HttpRequest) -> HttpResponse:
    """A new, empty condition row (htmx)."""
    return render(
        request,
        "automations/_condition_row.html",
        _editor_context(c=ConditionRow(_new_row())),
    )


@staff_page(Role.ADMIN)
def editor_action(request: HttpRequest) -> HttpResponse:
    """An action row: empty, or with the parameters of the chosen action (htmx)."""
    row = request.GET.get("row") or _new_row()
    if not row.isalnum() or len(row) > 16:
        row = _new_row()
    name = request.GET.get(f"act-{row}-action", "")
    spec = ACTIONS.get(name)
    a = ActionRow(row, name if spec else "", _param_fields(spec, {}))
    return render(request, "automations/_action_row.html", _editor_context(a=a))


@staff_page(Role.ADMIN)
def editor_fields(request: HttpRequest) -> HttpResponse:
    """The field suggestions of a trigger (htmx: the datalist's options)."""
    trigger = request.GET.get("trigger", "")
    options = rules.field_choices(trigger) if trigger in rules.TRIGGERS else []
    return render(request, "automations/_field_options.html", {"field_options": options})


@staff_page()
def run_list(request: HttpRequest) -> HttpResponse:
    """The runs log, newest first (filter by status or rule)."""
    status = request.GET.get("status", "")
    if status not in RunStatus.values:
        status = ""
    rule_id = request.GET.get("rule", "")
    try:
        rule_filter = UUID(rule_id) if rule_id else None
    except ValueError:
        rule_filter = None
    return render(
        request,
        "automations/runs.html",
        {
            "runs": queries.runs(status=status or None, rule_id=rule_filter, limit=200),
            "status": status,
            "statuses": RunStatus.choices,
            "tones": STATUS_TONES,
        },
    )


@staff_page()
def exception_list(request: HttpRequest) -> HttpResponse:
    """The exceptions queue: failed runs waiting for a retry or a person."""
    return render(
        request,
        "automations/exceptions.html",
        {"runs": queries.exceptions(limit=200), "tones": STATUS_TONES},
    )


def _run_or_404(run_id: UUID) -> queries.RunView:
    try:
        return queries.get_run(run_id)
    except NotFound:
        raise Http404 from None


@staff_page()
def run_detail(request: HttpRequest, run_id: UUID) -> HttpResponse:
    """One run: the event, the conditions with their values, the changes, the outcome."""
    run = _run_or_404(run_id)
    return render(
        request,
        "automations/run.html",
        {
            "run": run,
            "tones": STATUS_TONES,
            "operators": rules.OPERATORS,
            "action_labels": {a.name: a.label for a in ACTIONS.values()},
            "can_act": run.status == RunStatus.FAILED
            and has_role(request.user, *run.override_roles),
        },
    )


def _forbidden(request: HttpRequest, run: queries.RunView) -> HttpResponse:
    return render(
        request, "backoffice/forbidden.html", {"needed_roles": run.override_roles}, status=403
    )


@staff_page()
def run_retry(request: HttpRequest, run_id: UUID) -> HttpResponse:
    """Retry a failed run (POST; roles that may override it)."""
    run = _run_or_404(run_id)
    if request.method == "POST":
        try:
            after = services.retry_run(run.id, by=request.user)
        except PermissionDenied:
            return _forbidden(request, run)
        except DomainError as exc:
            messages.error(request, exc.message)
        else:
            if after.status == RunStatus.FAILED:
                messages.warning(request, _("The retry failed again; the run stays in the queue."))
            else:
                messages.success(request, _("The retry succeeded."))
    return redirect("automations:run", run_id=run.id)


@staff_page()
def run_handle(request: HttpRequest, run_id: UUID) -> HttpResponse:
    """Mark a failed run handled by hand, with a note (POST)."""
    run = _run_or_404(run_id)
    if request.method == "POST":
        try:
            services.handle_run(run.id, by=request.user, note=request.POST.get("note", ""))
        except PermissionDenied:
            return _forbidden(request, run)
        except DomainError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, _("The run was marked handled."))
    return redirect("automations:run", run_id=run.id)
