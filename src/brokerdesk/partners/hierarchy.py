"""The IB hierarchy: a closure table kept by two commands, and the fast queries over it.

``IBClosure`` holds one row per (ancestor, descendant) pair with their distance, each IB being
its own ancestor at depth 0. A subtree is one indexed range scan (``ancestor = X``), the upline
another (``descendant = X``), whatever the depth. Changes to the tree are serialised (an
advisory lock on PostgreSQL; SQLite runs one writer at a time), so two concurrent moves cannot
build a cycle.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Model, QuerySet

from brokerdesk.core import audit, clock
from brokerdesk.core.errors import Conflict, NotFound, ValidationError
from brokerdesk.core.money import get_currency
from brokerdesk.partners.models import IB, IBClosure, IBStatus
from brokerdesk.staff.roles import actor_label

_TREE_LOCK_KEY = 0x6962_7472_6565  # "ibtree"
M = TypeVar("M", bound=Model)


def as_uuid(value: UUID | str) -> UUID:
    """A UUID from a UUID or its text (``ValidationError`` when it is neither)."""
    try:
        return value if isinstance(value, UUID) else UUID(str(value))
    except ValueError:
        raise ValidationError("Not a valid id.", code="bad_uuid", field="ib_id") from None


def _lock_tree() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_TREE_LOCK_KEY])


def get_ib(ib_id: UUID | str) -> IB:
    """The IB, or ``NotFound``."""
    try:
        return IB.objects.get(pk=ib_id)
    except (IB.DoesNotExist, ValueError, DjangoValidationError):
        raise NotFound("No such IB.", code="ib_not_found", field="ib_id") from None


def create_ib(
    *,
    code: str,
    name: str,
    by: Any,
    parent_id: UUID | str | None = None,
    currency: str = "USD",
    client_id: UUID | str | None = None,
    user_id: int | None = None,
) -> IB:
    """Create an IB, at the top or under ``parent_id``; audited."""
    actor = actor_label(by)
    code = (code or "").strip().lower()
    if not code:
        raise ValidationError("An IB needs a code.", code="required", field="code")
    if not (name or "").strip():
        raise ValidationError("An IB needs a name.", code="required", field="name")
    currency = get_currency(currency).code
    with transaction.atomic():
        _lock_tree()
        parent = get_ib(parent_id) if parent_id is not None else None
        ib = IB(
            code=code,
            name=name.strip(),
            parent=parent,
            depth=(parent.depth + 1) if parent else 0,
            currency=currency,
            client_id=client_id,
            user_id=user_id,
            created_at=clock.now(),
        )
        try:
            with transaction.atomic():
                ib.save(force_insert=True)
        except IntegrityError:
            raise Conflict(
                f"An IB with code {code!r} exists.", code="code_taken", field="code"
            ) from None
        rows = [IBClosure(ancestor=ib, descendant=ib, depth=0)]
        if parent is not None:
            rows += [
                IBClosure(ancestor_id=a_id, descendant=ib, depth=d + 1)
                for a_id, d in IBClosure.objects.filter(descendant=parent).values_list(
                    "ancestor_id", "depth"
                )
            ]
        IBClosure.objects.bulk_create(rows)
        audit.record(
            actor=actor,
            action="partners.ib_created",
            object_type="ib",
            object_id=str(ib.pk),
            after={"code": code, "parent": str(parent.pk) if parent else None},
        )
    return ib


def move_subtree(
    ib_id: UUID | str, new_parent_id: UUID | str | None, *, by: Any, reason: str
) -> IB:
    """Move an IB with its whole subtree under ``new_parent_id`` (``None``: to the top).

    Refuses a move under the IB itself or one of its descendants (a cycle). Audited.
    """
    actor = actor_label(by)
    if not (reason or "").strip():
        raise ValidationError("A move needs a reason.", code="reason_required", field="reason")
    with transaction.atomic():
        _lock_tree()
        ib = get_ib(ib_id)
        new_parent = get_ib(new_parent_id) if new_parent_id is not None else None
        old_parent_id = ib.parent_id
        if (
            new_parent is not None
            and IBClosure.objects.filter(ancestor=ib, descendant=new_parent).exists()
        ):
            raise ValidationError(
                "An IB cannot be moved under itself or one of its sub-IBs.",
                code="cycle",
                field="new_parent_id",
            )
        if (new_parent.pk if new_parent else None) == old_parent_id:
            return ib
        subtree = IBClosure.objects.filter(ancestor=ib)
        sub_ids = list(subtree.values_list("descendant_id", flat=True))
        # cut: every pair (outside ancestor, node of the subtree)
        IBClosure.objects.filter(descendant_id__in=sub_ids).exclude(
            ancestor_id__in=sub_ids
        ).delete()
        new_depth = (new_parent.depth + 1) if new_parent else 0
        if new_parent is not None:
            uplines = list(
                IBClosure.objects.filter(descendant=new_parent).values_list("ancestor_id", "depth")
            )
            inner = list(subtree.values_list("descendant_id", "depth"))
            IBClosure.objects.bulk_create(
                [
                    IBClosure(ancestor_id=a_id, descendant_id=d_id, depth=a_depth + d_depth + 1)
                    for a_id, a_depth in uplines
                    for d_id, d_depth in inner
                ],
                batch_size=5000,
            )
        delta = new_depth - ib.depth
        if delta:
            IB.objects.filter(pk__in=sub_ids).update(depth=F("depth") + delta)
        IB.objects.filter(pk=ib.pk).update(parent=new_parent)
        audit.record(
            actor=actor,
            action="partners.ib_moved",
            object_type="ib",
            object_id=str(ib.pk),
            reason=reason,
            before={"parent": str(old_parent_id) if old_parent_id else None},
            after={
                "parent": str(new_parent.pk) if new_parent else None,
                "subtree_size": len(sub_ids),
            },
        )
        ib.refresh_from_db()
    return ib


def set_status(ib_id: UUID | str, status: str, *, by: Any, reason: str) -> IB:
    """Suspend or reactivate an IB (a suspended IB earns nothing); audited."""
    actor = actor_label(by)
    if status not in IBStatus.values:
        raise ValidationError(f"Unknown status {status!r}.", code="invalid", field="status")
    if not (reason or "").strip():
        raise ValidationError("A reason is required.", code="reason_required", field="reason")
    with transaction.atomic():
        ib = IB.objects.select_for_update().filter(pk=get_ib(ib_id).pk).get()
        before = ib.status
        ib.status = status
        ib.save(update_fields=["status"])
        audit.record(
            actor=actor,
            action="partners.ib_status",
            object_type="ib",
            object_id=str(ib.pk),
            reason=reason,
            before={"status": before},
            after={"status": status},
        )
    return ib


# ---------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class TreeNode:
    """One IB of a subtree or upline, with its distance from the IB asked about."""

    ib_id: UUID
    depth: int


def subtree(ib_id: UUID | str, *, max_depth: int | None = None) -> list[TreeNode]:
    """The IB and every IB below it (depth 0 is the IB itself), nearest first."""
    qs = IBClosure.objects.filter(ancestor_id=as_uuid(ib_id))
    if max_depth is not None:
        qs = qs.filter(depth__lte=max_depth)
    return [TreeNode(d, n) for d, n in qs.order_by("depth").values_list("descendant_id", "depth")]


def subtree_ids(ib_id: UUID | str) -> list[UUID]:
    """Ids of the IB and its whole subtree."""
    return list(
        IBClosure.objects.filter(ancestor_id=as_uuid(ib_id)).values_list("descendant_id", flat=True)
    )


def subtree_size(ib_id: UUID | str) -> int:
    """How many IBs the subtree holds, the IB included."""
    return IBClosure.objects.filter(ancestor_id=as_uuid(ib_id)).count()


def ancestors(ib_id: UUID | str, *, max_depth: int | None = None) -> list[TreeNode]:
    """The upline: parent at depth 1, its parent at depth 2, …, the top IB last."""
    qs = IBClosure.objects.filter(descendant_id=as_uuid(ib_id), depth__gt=0)
    if max_depth is not None:
        qs = qs.filter(depth__lte=max_depth)
    return [TreeNode(a, n) for a, n in qs.order_by("depth").values_list("ancestor_id", "depth")]


def is_within(ancestor_id: UUID | str, descendant_id: UUID | str) -> bool:
    """True when ``descendant_id`` is ``ancestor_id`` or below it."""
    return IBClosure.objects.filter(
        ancestor_id=as_uuid(ancestor_id), descendant_id=as_uuid(descendant_id)
    ).exists()


_ARRAY_SPECIAL = re.compile(r'[{}"\\\s]')


def array_literal(values: list[Any]) -> str | list[Any]:
    """Values as one PostgreSQL array literal (``{a,b,c}``), built by ``str.join`` rather than
    by the driver element by element; values whose text needs it are quoted. A list holding
    ``None`` is returned as it is (for the driver to dump)."""
    if any(v is None for v in values):
        return values
    if not values:
        return "{}"
    texts = list(map(str, values))
    joined = ",".join(texts)
    if (
        all(texts)
        and joined.count(",") == len(texts) - 1
        and not _ARRAY_SPECIAL.search(joined)
        and "NULL" not in joined.upper()
    ):
        return "{" + joined + "}"
    quoted = (t.replace("\\", "\\\\").replace('"', '\\"') for t in texts)
    return '{"' + '","'.join(quoted) + '"}'


def any_of(qs: QuerySet[M], name: str, values: Iterable[Any]) -> QuerySet[M]:
    """``qs`` filtered to rows whose ``name`` is among ``values``: ``= ANY(array)`` on
    PostgreSQL (one parameter however many values — thousands of ids per accrual batch —
    sent as one array literal), ``IN`` elsewhere."""
    wanted = list(values)
    if connection.vendor != "postgresql":
        return qs.filter(**{f"{name}__in": wanted})
    qn = connection.ops.quote_name
    field = qs.model._meta.get_field(name)
    column = field.column  # type: ignore[union-attr]
    kind = str(field.db_type(connection)).split("(")[0]  # type: ignore[union-attr]
    where = f"{qn(qs.model._meta.db_table)}.{qn(str(column))} = ANY(%s::{kind}[])"
    params = [array_literal(wanted)]
    return qs.extra(where=[where], params=params)  # noqa: S610 - names from the model


def uplines(ib_ids: list[UUID], max_depth: int) -> dict[UUID, list[TreeNode]]:
    """The uplines (depth 1..max_depth) of many IBs in one query."""
    out: dict[UUID, list[TreeNode]] = {i: [] for i in ib_ids}
    if not ib_ids or max_depth < 1:
        return out
    rows = (
        any_of(IBClosure.objects.filter(depth__gt=0, depth__lte=max_depth), "descendant", ib_ids)
        .order_by("descendant_id", "depth")
        .values_list("descendant_id", "ancestor_id", "depth")
    )
    for d_id, a_id, depth in rows:
        out[d_id].append(TreeNode(a_id, depth))
    return out
