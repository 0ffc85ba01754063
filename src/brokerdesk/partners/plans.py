"""Commission plans as versioned data: create, publish a new version (forward only), assign.

A version's rules are immutable once written. A deal is commissioned under the version valid
at its close time (the latest ``valid_from`` not after it), and a new version may only start
now or later, so publishing never changes how a past deal was — or will be — commissioned.
"""

from __future__ import annotations

import bisect
from datetime import datetime
from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction

from brokerdesk.core import audit, clock
from brokerdesk.core.errors import Conflict, NotFound, ValidationError
from brokerdesk.core.money import get_currency
from brokerdesk.partners.hierarchy import any_of, get_ib
from brokerdesk.partners.models import Plan, PlanAssignment, PlanVersion
from brokerdesk.partners.permissions import staff_actor
from brokerdesk.partners.rules import PlanRules, parse_rules
from brokerdesk.staff.roles import Role


def _manager(by: Any) -> str:
    return staff_actor(by, Role.PARTNER_MANAGER)


def get_plan(plan_id: UUID | str) -> Plan:
    """The plan, or ``NotFound``."""
    try:
        return Plan.objects.get(pk=plan_id)
    except (Plan.DoesNotExist, ValueError, DjangoValidationError):
        raise NotFound("No such plan.", code="plan_not_found", field="plan_id") from None


def _check_start(valid_from: datetime, field: str = "valid_from") -> datetime:
    if valid_from.tzinfo is None:
        raise ValidationError("valid_from needs a time zone.", code="naive_time", field=field)
    if valid_from < clock.now():
        raise ValidationError(
            "A plan version applies only forward: valid_from may not be in the past.",
            code="backdated",
            field=field,
        )
    return valid_from


def create_plan(
    *,
    code: str,
    name: str,
    currency: str,
    rules: dict[str, Any],
    by: Any,
    valid_from: datetime | None = None,
    reason: str = "",
) -> PlanVersion:
    """A new plan with its first version (from now, or a later ``valid_from``)."""
    actor = _manager(by)
    parse_rules(rules)
    code = (code or "").strip().lower()
    if not code:
        raise ValidationError("A plan needs a code.", code="required", field="code")
    currency = get_currency(currency).code
    start = _check_start(valid_from) if valid_from else clock.now()
    with transaction.atomic():
        try:
            with transaction.atomic():
                plan = Plan.objects.create(
                    code=code, name=name or code, currency=currency, created_at=clock.now()
                )
        except IntegrityError:
            raise Conflict(f"A plan {code!r} exists.", code="code_taken", field="code") from None
        version = PlanVersion.objects.create(
            plan=plan,
            number=1,
            valid_from=start,
            rules=rules,
            created_by=actor,
            created_at=clock.now(),
            reason=reason,
        )
        audit.record(
            actor=actor,
            action="partners.plan_created",
            object_type="plan",
            object_id=str(plan.pk),
            reason=reason,
            after={
                "code": code,
                "currency": currency,
                "version": 1,
                "rules": rules,
                "valid_from": start.isoformat(),
            },
        )
    return version


def publish_version(
    plan_id: UUID | str,
    rules: dict[str, Any],
    *,
    by: Any,
    reason: str,
    valid_from: datetime | None = None,
) -> PlanVersion:
    """A new version of the plan, valid from now (or a later time) on; audited."""
    actor = _manager(by)
    if not (reason or "").strip():
        raise ValidationError("A reason is required.", code="reason_required", field="reason")
    parse_rules(rules)
    start = _check_start(valid_from) if valid_from else clock.now()
    with transaction.atomic():
        plan = Plan.objects.select_for_update().filter(pk=get_plan(plan_id).pk).get()
        latest = plan.versions.order_by("-number").first()
        assert latest is not None
        if start <= latest.valid_from:
            raise ValidationError(
                f"valid_from must be after version {latest.number}'s "
                f"({latest.valid_from.isoformat()}).",
                code="not_after_previous",
                field="valid_from",
            )
        version = PlanVersion.objects.create(
            plan=plan,
            number=latest.number + 1,
            valid_from=start,
            rules=rules,
            created_by=actor,
            created_at=clock.now(),
            reason=reason,
        )
        audit.record(
            actor=actor,
            action="partners.plan_version_published",
            object_type="plan",
            object_id=str(plan.pk),
            reason=reason,
            before={"version": latest.number, "rules": latest.rules},
            after={"version": version.number, "rules": rules, "valid_from": start.isoformat()},
        )
    return version


def assign_plan(
    ib_id: UUID | str,
    plan_id: UUID | str,
    *,
    by: Any,
    reason: str = "",
    valid_from: datetime | None = None,
) -> PlanAssignment:
    """Put the IB on a plan from now (or a later time) on; earlier deals keep their plan."""
    actor = _manager(by)
    start = _check_start(valid_from) if valid_from else clock.now()
    with transaction.atomic():
        ib = get_ib(ib_id)
        plan = get_plan(plan_id)
        if plan.currency != ib.currency:
            raise ValidationError(
                f"The plan pays in {plan.currency}, the IB in {ib.currency}.",
                code="currency_mismatch",
                field="plan_id",
            )
        latest = ib.plan_assignments.order_by("-valid_from").first()
        if latest is not None and start <= latest.valid_from:
            raise ValidationError(
                "valid_from must be after the IB's current assignment.",
                code="not_after_previous",
                field="valid_from",
            )
        assignment = PlanAssignment.objects.create(
            ib=ib, plan=plan, valid_from=start, assigned_by=actor, reason=reason
        )
        audit.record(
            actor=actor,
            action="partners.plan_assigned",
            object_type="ib",
            object_id=str(ib.pk),
            reason=reason,
            before={"plan": str(latest.plan_id) if latest else None},
            after={"plan": str(plan.pk), "valid_from": start.isoformat()},
        )
    return assignment


class PlanBook:
    """Plan assignments and versions loaded once, looked up by time (one accrual batch)."""

    def __init__(self, ib_ids: list[UUID]) -> None:
        self.assignments: dict[UUID, list[tuple[datetime, UUID]]] = {}
        rows = any_of(PlanAssignment.objects.all(), "ib", ib_ids).order_by("valid_from")
        for ib_id, valid_from, plan_id in rows.values_list("ib_id", "valid_from", "plan_id"):
            self.assignments.setdefault(ib_id, []).append((valid_from, plan_id))
        plan_ids = {p for rows in self.assignments.values() for _, p in rows}
        self.versions: dict[UUID, list[PlanVersion]] = {}
        for v in (
            PlanVersion.objects.filter(plan_id__in=plan_ids)
            .select_related("plan")
            .order_by("valid_from")
        ):
            self.versions.setdefault(v.plan_id, []).append(v)
        self._parsed: dict[UUID, PlanRules] = {}

    @staticmethod
    def _at(rows: list[Any], when: datetime, key: Any) -> Any:
        starts = [key(r) for r in rows]
        i = bisect.bisect_right(starts, when)
        return rows[i - 1] if i else None

    def version_for(self, ib_id: UUID, when: datetime) -> PlanVersion | None:
        """The plan version that governs the IB's deals closed at ``when``."""
        assignment = self._at(self.assignments.get(ib_id, []), when, lambda r: r[0])
        if assignment is None:
            return None
        version: PlanVersion | None = self._at(
            self.versions.get(assignment[1], []), when, lambda v: v.valid_from
        )
        return version

    def rules(self, version: PlanVersion) -> PlanRules:
        """The parsed rules of a version (parsed once)."""
        if version.pk not in self._parsed:
            self._parsed[version.pk] = parse_rules(version.rules)
        return self._parsed[version.pk]
