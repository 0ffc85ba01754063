"""How the engine reads and stores its rows: look-ups and upserts by array (PostgreSQL) and
the references kept without a database constraint (counted by ``queries.orphan_rows``)."""

from __future__ import annotations

from datetime import date

import pytest

from brokerdesk.core import clock
from brokerdesk.core.ids import new_id
from brokerdesk.partners import accrual, hierarchy, queries
from brokerdesk.partners.models import (
    IB,
    Accrual,
    AccrualKind,
    DealRecord,
    IBDailyActivity,
    IBPeriodVolume,
)
from tests.partners.conftest import T0, make_ib

pytestmark = pytest.mark.django_db


def test_the_upsert_adds_per_key_whatever_the_text_of_the_keys():
    """Keys with commas, quotes, backslashes, spaces or the word NULL reach the database as
    written (on PostgreSQL each column travels as one array literal)."""
    ib = make_ib()
    day = date(2026, 3, 2)
    awkward = ['a,b"c', "x\\y z", "NULL", "", "{}", "USD"]
    rows = [(ib.pk, day, 0, code, 1, 10, 100) for code in awkward]
    for _ in range(2):
        accrual.upsert_add(
            IBDailyActivity,
            ("ib", "day", "level", "currency"),
            ("deals", "volume", "earned"),
            rows,
            sets=(("updated_at", T0),),
        )
    got = {
        r.currency: (r.deals, r.volume, r.earned, r.updated_at)
        for r in IBDailyActivity.objects.filter(ib=ib)
    }
    assert got == {code: (2, 20, 200, T0) for code in awkward}


def test_the_array_literal_quotes_only_what_needs_quoting():
    assert hierarchy.array_literal([1, -2, 3]) == "{1,-2,3}"
    assert hierarchy.array_literal(["USD", "EUR"]) == "{USD,EUR}"
    assert hierarchy.array_literal(['a,b"c', "null"]) == '{"a,b\\"c","null"}'
    assert hierarchy.array_literal(["x", None]) == ["x", None]  # left to the driver
    assert hierarchy.array_literal([]) == "{}"


def test_any_of_finds_exactly_the_values_given():
    names = ['a,b"c', "x\\y z", "NULL", "{}", "plain"]
    ibs = [make_ib() for _ in names]
    for ib, name in zip(ibs, names, strict=True):
        IB.objects.filter(pk=ib.pk).update(name=name)
    found = hierarchy.any_of(IB.objects.all(), "name", [*names[:4], "absent"])
    assert set(found.values_list("pk", flat=True)) == {ib.pk for ib in ibs[:4]}
    assert not hierarchy.any_of(IB.objects.all(), "id", []).exists()
    assert hierarchy.any_of(IB.objects.all(), "id", [ibs[0].pk]).get() == ibs[0]


def test_orphan_rows_counts_references_that_have_no_constraint():
    ib = make_ib()
    assert queries.orphan_rows() == 0
    with clock.frozen(T0):
        Accrual.objects.create(
            source_key="adj:orphan",
            kind=AccrualKind.ADJUSTMENT,
            ib=ib,
            currency="USD",
            amount=1,
            occurred_at=T0,
            accrued_at=T0,
            state_changed_at=T0,
            payout_id=new_id(),  # no such payout
            adjusts_id=new_id(),  # no such accrual
        )
        IBPeriodVolume.objects.create(ib_id=new_id(), period=date(2026, 3, 1), volume=1)
        IBDailyActivity.objects.create(
            ib_id=new_id(), day=date(2026, 3, 2), level=0, currency="USD", updated_at=T0
        )
    assert queries.orphan_rows() == 4


@pytest.mark.django_db(transaction=True)
def test_row_streams_store_every_row_of_every_model_once_whatever_the_switches():
    """Rows of three models produced in turns, with switches of the open COPY in between
    (on PostgreSQL), all arrive once; rows produced after the stream ends wait for flush."""
    from django.db import transaction

    ib = make_ib()
    keys = [f"S:{n}" for n in range(30)]
    first = accrual.RowStream(Accrual, ("id", *_ACCRUAL_MINIMAL))
    second = accrual.RowStream(DealRecord, _DEAL_MINIMAL)
    streams = accrual.RowStreams(first, second)
    with transaction.atomic():
        with streams.streaming():
            for n, key in enumerate(keys):
                second.append(_deal_row(key))
                first.append(_accrual_row(key, ib.pk))
                if n % 7 == 6:
                    streams.switch()
        first.append(_accrual_row("S:late", ib.pk))
        streams.flush()
    assert sorted(Accrual.objects.values_list("source_key", flat=True)) == sorted([*keys, "S:late"])
    assert sorted(DealRecord.objects.values_list("key", flat=True)) == sorted(keys)
    assert (first.count, second.count) == (31, 30)


@pytest.mark.django_db(transaction=True)
def test_a_failure_while_streaming_stores_nothing():
    from django.db import transaction

    ib = make_ib()
    rows = accrual.RowStream(Accrual, ("id", *_ACCRUAL_MINIMAL))
    streams = accrual.RowStreams(rows)
    with pytest.raises(RuntimeError), transaction.atomic(), streams.streaming():
        rows.append(_accrual_row("S:1", ib.pk))
        raise RuntimeError("the engine failed half way")
    assert not Accrual.objects.exists()
    with transaction.atomic():
        with streams.streaming():
            rows.append(_accrual_row("S:2", ib.pk))
        streams.flush()  # nothing waits on PostgreSQL; SQLite writes here
    assert list(Accrual.objects.values_list("source_key", flat=True)) == ["S:2"]


_ACCRUAL_MINIMAL = (
    "source_key", "kind", "part", "ib", "level", "currency", "amount", "held",
    "remainder_ppm", "volume", "computation", "state", "occurred_at", "accrued_at",
    "state_changed_at", "reason", "actor",
)  # fmt: skip
_DEAL_MINIMAL = (
    "key", "server", "login", "deal", "closed_at", "symbol", "volume", "profit",
    "commission", "swap", "currency", "group", "position_id", "payload", "processed_at",
)  # fmt: skip


def _stamp(value):
    from django.db import connection

    return value.isoformat() if connection.vendor == "postgresql" else value


def _accrual_row(key, ib_id):
    return (
        str(new_id()), key, AccrualKind.DEAL, "main", str(ib_id), 0, "USD", 100, 10, 0, 1000,
        "{}", "accrued", _stamp(T0), _stamp(T0), _stamp(T0), "", "system",
    )  # fmt: skip


def _deal_row(key):
    return (
        key, "S", 1, int(key.split(":")[1]), _stamp(T0), "EURUSD", 1000, 0, 0, 0, "USD",
        "real", 7, "{}", _stamp(T0),
    )  # fmt: skip
