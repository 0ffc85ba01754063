"""Monthly range partitions on PostgreSQL for append-mostly tables (ledger entries, deals).

A table created ``PARTITION BY RANGE (column)`` gets a DEFAULT partition (so an insert never
fails) and one partition per month, created ahead of time by ``ensure_monthly_partitions``
(run by migrations and by the worker).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from django.db import connection

from brokerdesk.core import clock


def _month_start(day: date, offset: int) -> date:
    month_index = day.year * 12 + (day.month - 1) + offset
    return date(month_index // 12, month_index % 12 + 1, 1)


def ensure_monthly_partitions(
    table: str, *, months_back: int = 1, months_ahead: int = 3, using: object = None
) -> list[str]:
    """Create the missing monthly partitions of ``table`` around today; return their names.

    Does nothing on databases other than PostgreSQL.
    """
    conn = using or connection
    if conn.vendor != "postgresql":  # type: ignore[attr-defined]
        return []
    today = clock.now().astimezone(UTC).date()
    created: list[str] = []
    with conn.cursor() as cursor:  # type: ignore[attr-defined]
        for offset in range(-months_back, months_ahead + 1):
            start, end = _month_start(today, offset), _month_start(today, offset + 1)
            name = f"{table}_p{start:%Y%m}"
            cursor.execute("SELECT to_regclass(%s)", [name])
            if cursor.fetchone()[0] is not None:
                continue
            cursor.execute(
                f'CREATE TABLE "{name}" PARTITION OF "{table}" '
                "FOR VALUES FROM (%s) TO (%s)",
                [
                    datetime(start.year, start.month, 1, tzinfo=UTC),
                    datetime(end.year, end.month, 1, tzinfo=UTC),
                ],
            )
            created.append(name)
    return created
