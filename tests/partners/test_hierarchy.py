"""The IB hierarchy: closure rows kept by create and move; subtree and upline queries."""

from __future__ import annotations

import pytest

from brokerdesk.core.errors import ValidationError
from brokerdesk.core.models import AuditEntry
from brokerdesk.partners import hierarchy
from brokerdesk.partners.bench import build_tree, check_closure, insert_tree, level_sizes
from brokerdesk.partners.models import IBClosure
from tests.partners.conftest import chain, make_ib

pytestmark = pytest.mark.django_db


def test_a_deep_chain_has_every_ancestor_in_order():
    line = chain(12)
    leaf = line[-1]

    ups = hierarchy.ancestors(leaf.pk)

    assert [n.ib_id for n in ups] == [ib.pk for ib in reversed(line[:-1])]
    assert [n.depth for n in ups] == list(range(1, 12))
    assert hierarchy.subtree_size(line[0].pk) == 12
    assert leaf.depth == 11


def test_subtree_lists_descendants_nearest_first_and_respects_max_depth():
    top = make_ib()
    a, b = make_ib(top), make_ib(top)
    a1 = make_ib(a)

    nodes = hierarchy.subtree(top.pk)

    assert next((n.ib_id, n.depth) for n in nodes) == (top.pk, 0)
    assert {n.ib_id for n in nodes} == {top.pk, a.pk, b.pk, a1.pk}
    assert {n.ib_id for n in hierarchy.subtree(top.pk, max_depth=1)} == {top.pk, a.pk, b.pk}
    assert hierarchy.is_within(top.pk, a1.pk) and not hierarchy.is_within(a.pk, b.pk)


def test_moving_a_subtree_rewires_every_closure_row_and_is_audited():
    left, right = make_ib(), make_ib()
    mid = make_ib(left)
    low = make_ib(mid)

    hierarchy.move_subtree(mid.pk, right.pk, by="system:test", reason="contract moved")

    assert [n.ib_id for n in hierarchy.ancestors(low.pk)] == [mid.pk, right.pk]
    assert not hierarchy.is_within(left.pk, low.pk)
    low.refresh_from_db()
    assert low.depth == 2
    assert check_closure() == 0
    entry = AuditEntry.objects.filter(action="partners.ib_moved").get()
    assert entry.reason == "contract moved" and entry.after["parent"] == str(right.pk)


def test_moving_under_an_own_descendant_is_refused_and_changes_nothing():
    top = make_ib()
    child = make_ib(top)
    before = IBClosure.objects.count()

    with pytest.raises(ValidationError) as err:
        hierarchy.move_subtree(top.pk, child.pk, by="system:test", reason="oops")

    assert err.value.code == "cycle"
    assert IBClosure.objects.count() == before


def test_moving_to_the_top_makes_a_root():
    top = make_ib()
    child = make_ib(top)
    hierarchy.move_subtree(child.pk, None, by="system:test", reason="independent now")
    assert hierarchy.ancestors(child.pk) == []
    assert check_closure() == 0


def test_bench_tree_builder_makes_a_consistent_closure():
    import random

    nodes, closure = build_tree(300, 10, random.Random(1))
    insert_tree(nodes, closure)

    assert sum(level_sizes(300, 10)) == 300
    assert check_closure() == 0
    leaf = next(n for n, _, d in nodes if d == 9)
    assert len(hierarchy.ancestors(leaf)) == 9
