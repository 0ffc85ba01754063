"""Binary arrays built a column at a time read back as psycopg's own, and bulk updates find
their rows by index."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection

from brokerdesk.core import bulk, pgarrays
from brokerdesk.core.ids import new_id

pytestmark = pytest.mark.django_db

NOW = datetime.now(UTC)
COLUMNS: list[tuple[str, list[Any]]] = [
    ("bigint", [1, -5, 2**62, None, 0, 2**63 - 1, -(2**63)]),
    ("bigint", [7] * 5),
    ("bigint", [None] * 3),
    ("integer", [1, -5, 2**30]),
    ("uuid", [new_id() for _ in range(5)]),
    ("uuid", [None, uuid.uuid4(), uuid.UUID(int=0)]),
    ("uuid", [uuid.UUID(int=7)] * 3),
    ("varchar", ["a", "", "Zahlung für Anna ✓", None, "x" * 300]),
    ("varchar", ["D", "C"] * 3),
    ("text", ['{"a": 1}', "zz"]),
    ("boolean", [True, False, None]),
    ("boolean", [False] * 4),
    (
        "timestamp with time zone",
        [
            NOW,
            NOW + timedelta(microseconds=1),
            datetime(1990, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=3))),
            None,
        ],
    ),
    ("timestamp with time zone", [NOW] * 3),
]


@pytest.fixture
def pg() -> Any:
    """psycopg's own connection (the suite's PostgreSQL run only)."""
    if connection.vendor != "postgresql":
        pytest.skip("binary arrays are sent to PostgreSQL only")
    cursor = bulk.pg_cursor()
    yield cursor
    cursor.close()


@pytest.mark.parametrize(("type_name", "values"), COLUMNS)
def test_an_encoded_array_reads_back_as_the_list_psycopg_sends(pg, type_name, values):
    encoded = pgarrays.encode(type_name, values)

    assert isinstance(encoded, pgarrays.PgArray)
    pg.execute(f"SELECT %b::{type_name}[], %b::{type_name}[]", [encoded, values])
    ours, psycopgs = pg.fetchone()
    assert ours == psycopgs == values


@pytest.mark.parametrize(
    ("type_name", "values"),
    [
        ("bigint", [1.5, 2]),
        ("bigint", [Decimal(1)]),
        ("bigint", [2**64]),
        ("uuid", ["not a uuid"]),
        ("boolean", [1, 0]),
        ("timestamp with time zone", [datetime(2020, 1, 1)]),  # naive: psycopg decides
        ("numeric", [1]),
        ("bigint", []),
    ],
)
def test_what_it_does_not_handle_stays_a_list_for_psycopg(type_name, values):
    assert pgarrays.encode(type_name, values) == values


def test_a_bulk_update_reads_the_table_by_its_index(pg):
    """A bulk update finds its rows by primary key, even planned for the values at hand (the
    first runs of a prepared statement, and every unprepared one): joined to the ``unnest``
    alone, a few hundred keys made the planner hash a scan of the whole table, which grows
    with the table rather than with the rows updated."""
    from brokerdesk.ledger.models import LedgerAccount
    from brokerdesk.ledger.services import open_accounts

    accounts = open_accounts("client", [f"plan-{n}" for n in range(5_000)], "USD")
    pg.execute("ANALYZE ledger_ledgeraccount")
    rows = [SimpleNamespace(id=i, entry_count=0) for i in sorted(accounts.values())[:300]]

    pg.execute(
        "EXPLAIN " + bulk._pg_update_sql(LedgerAccount, ("entry_count",)),
        bulk._pg_update_params(LedgerAccount, ["entry_count"], rows),
    )
    plan = "\n".join(row[0] for row in pg.fetchall())

    assert "ledger_ledgeraccount_pkey" in plan
    assert "Seq Scan on ledger_ledgeraccount" not in plan
