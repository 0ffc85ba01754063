"""Fast bulk writes (the ledger's batch engine, the relay, consumers): few statements.

On PostgreSQL ``write_batch`` writes a batch in ONE round trip — a statement whose
data-modifying CTEs insert every table from ``unnest(arrays)`` and whose body updates the
balances, the arrays sent as binary parameters through a server-binding cursor — and only a
very large one by ``COPY`` per table plus one ``UPDATE … FROM unnest(arrays)``. ``insert``
alone uses ``COPY``. Elsewhere (SQLite) it is ``executemany``. Values for SQLite are prepared
by the model fields.
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import psycopg
from django.db import connection, models

from brokerdesk.core import pgarrays


def to_json(value: Any) -> str:
    """JSON text for a JSON column: orjson (fast), ``str()`` for what JSON has no type for."""
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits
        return json.dumps(value, default=str)


def _prepare(field: models.Field[Any, Any], value: Any) -> Any:
    if isinstance(field, models.JSONField):
        return to_json(value)
    if connection.vendor == "postgresql":
        return value  # psycopg adapts uuid, datetime, int, bool, str and None itself
    return field.get_db_prep_save(value, connection)


_MISSING = object()


def _value(obj: Any, field: models.Field[Any, Any]) -> Any:
    """The object's value for a column, or the field's default when the object has none."""
    value = getattr(obj, field.attname, _MISSING)
    return field.get_default() if value is _MISSING else value


@functools.cache
def _pg_type(field: models.Field[Any, Any]) -> str:
    if isinstance(field, models.JSONField):
        return "text"
    db_type = field.db_type(connection) or "text"
    return db_type.split("(")[0] if db_type.startswith("varchar") else db_type


def _columns(model: type[models.Model], names: Sequence[str]) -> list[models.Field[Any, Any]]:
    return [model._meta.get_field(name) for name in names]  # type: ignore[misc]


# Up to this many rows a batch goes as one statement (binary arrays beat COPY's round trips).
ONE_STATEMENT_MAX_ROWS = 20_000


def _insert_fields(model: type[models.Model]) -> list[models.Field[Any, Any]]:
    return [f for f in model._meta.concrete_fields if not isinstance(f, models.AutoField)]


def _pg_arrays(fields: Sequence[models.Field[Any, Any]], objects: Sequence[Any]) -> list[Any]:
    """One binary array per column (``pgarrays``; JSON goes as text)."""
    arrays = []
    for f in fields:
        if hasattr(objects[0], f.attname):
            values = list(map(operator.attrgetter(f.attname), objects))
        else:
            values = [_value(o, f) for o in objects]
        if isinstance(f, models.JSONField):
            arrays.append(pgarrays.encode("text", list(map(to_json, values))))
        else:
            arrays.append(pgarrays.encode(_pg_type(f), values))
    return arrays


def pg_cursor() -> psycopg.Cursor[Any]:
    """A cursor on Django's PostgreSQL connection that binds parameters on the server.

    Django's own cursors bind on the client (arrays are quoted into the SQL text); for the hot
    paths the server-side cursor is cheaper on both sides, and psycopg prepares a statement
    once it has run a few times. It shares Django's connection and so its transaction.
    """
    connection.ensure_connection()
    pgarrays.register(connection.connection)
    return psycopg.Cursor(connection.connection)


@functools.cache
def _pg_insert_sql(model: type[models.Model]) -> str:
    fields = _insert_fields(model)
    columns = ", ".join(f'"{f.column}"' for f in fields)
    selects = ", ".join(
        f"v{i}::jsonb" if isinstance(f, models.JSONField) else f"v{i}" for i, f in enumerate(fields)
    )
    unnest = ", ".join(f"%b::{_pg_type(f)}[]" for f in fields)
    aliases = ", ".join(f"v{i}" for i in range(len(fields)))
    return (
        f"INSERT INTO {model._meta.db_table} ({columns}) "  # noqa: S608 - names from models
        f"SELECT {selects} FROM unnest({unnest}) AS t({aliases})"
    )


@functools.cache
def _pg_update_sql(model: type[models.Model], names: tuple[str, ...]) -> str:
    fields = _columns(model, names)
    pk = model._meta.pk
    assert pk is not None
    table = model._meta.db_table
    unnest = ", ".join(f"%b::{_pg_type(f)}[]" for f in [pk, *fields])
    aliases = ", ".join(f"v{i}" for i in range(len(fields) + 1))
    sets = ", ".join(f'"{f.column}" = u.v{i + 1}' for i, f in enumerate(fields))
    # The keys again as `= ANY(…)`: the table is read by its index, one probe per key (joined
    # to the unnest alone, the generic plan hashes a sequential scan of the whole table).
    return (
        f"UPDATE {table} SET {sets} FROM unnest({unnest}) AS u({aliases}) "  # noqa: S608
        f'WHERE {table}."{pk.column}" = u.v0 '
        f'AND {table}."{pk.column}" = ANY(%b::{_pg_type(pk)}[])'
    )


def _pg_update_params(
    model: type[models.Model], names: Sequence[str], objects: Sequence[Any]
) -> list[Any]:
    """The arrays of ``_pg_update_sql``: keys, one per field, and the keys again."""
    pk = model._meta.pk
    assert pk is not None
    arrays = _pg_arrays([pk, *_columns(model, names)], objects)
    return [*arrays, arrays[0]]


def _in_pipeline() -> bool:
    return connection.connection is not None and connection.connection._pipeline is not None


def write_batch(
    inserts: Sequence[tuple[type[models.Model], Sequence[Any]]],
    update_model: type[models.Model],
    update_fields: Sequence[str],
    updated: Sequence[Any],
) -> None:
    """Insert rows into several tables and update others, as few round trips as possible."""
    rows = sum(len(objects) for _, objects in inserts) + len(updated)
    if (
        connection.vendor != "postgresql"
        or not updated
        or (
            rows > ONE_STATEMENT_MAX_ROWS and not _in_pipeline()  # COPY cannot run in a pipeline
        )
    ):
        for model, objects in inserts:
            insert(model, objects)
        update(update_model, update_fields, updated)
        return
    ctes, params = [], []
    for index, (model, objects) in enumerate(inserts):
        if objects:
            ctes.append(f"i{index} AS ({_pg_insert_sql(model)})")
            params.extend(_pg_arrays(_insert_fields(model), objects))
    params.extend(_pg_update_params(update_model, update_fields, updated))
    update_sql = _pg_update_sql(update_model, tuple(update_fields))
    sql = (f"WITH {', '.join(ctes)} " if ctes else "") + update_sql
    with pg_cursor() as cursor:
        cursor.execute(sql, params, prepare=True)


def _row_builder(
    fields: Sequence[models.Field[Any, Any]], sample: Any
) -> Callable[[Any], list[Any]]:
    """A function making the COPY row of an object shaped like ``sample`` (one attrgetter
    call per row; defaults for the columns the object has no attribute for; JSON as text)."""
    present = [i for i, f in enumerate(fields) if hasattr(sample, f.attname)]
    missing = [(i, f) for i, f in enumerate(fields) if not hasattr(sample, f.attname)]
    json_columns = [i for i, f in enumerate(fields) if isinstance(f, models.JSONField)]
    get = operator.attrgetter(*(fields[i].attname for i in present))
    width = len(fields)

    def build(o: Any) -> list[Any]:
        values = get(o)
        if len(present) == 1:
            values = (values,)
        if not missing:
            row = list(values)
        else:
            row = [None] * width
            for i, value in zip(present, values, strict=True):
                row[i] = value
            for i, f in missing:
                row[i] = f.get_default()
        for i in json_columns:
            row[i] = to_json(row[i])
        return row

    return build


def insert(model: type[models.Model], objects: Sequence[Any]) -> None:
    """Insert ``objects`` (model instances) with every concrete field but an auto id."""
    if not objects:
        return
    fields = _insert_fields(model)
    table = model._meta.db_table
    column_list = ", ".join(f'"{f.column}"' for f in fields)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            build = _row_builder(fields, objects[0])
            raw = cursor.cursor  # psycopg's own cursor: COPY is the fastest way in
            with raw.copy(f"COPY {table} ({column_list}) FROM STDIN") as copy:
                for o in objects:
                    copy.write_row(build(o))
        else:
            rows = [tuple(_prepare(f, _value(o, f)) for f in fields) for o in objects]
            marks = ", ".join(["%s"] * len(fields))
            cursor.executemany(
                f"INSERT INTO {table} ({column_list}) VALUES ({marks})",  # noqa: S608
                rows,
            )


def update(model: type[models.Model], names: Sequence[str], objects: Sequence[Any]) -> None:
    """Write the fields ``names`` of ``objects`` back, matched on primary key."""
    if not objects:
        return
    fields = _columns(model, names)
    pk = model._meta.pk
    assert pk is not None
    table = model._meta.db_table
    if connection.vendor == "postgresql":
        with pg_cursor() as pg:
            pg.execute(
                _pg_update_sql(model, tuple(names)), _pg_update_params(model, names, objects)
            )
        return
    sets = ", ".join(f'"{f.column}" = %s' for f in fields)
    rows = [
        (*(_prepare(f, getattr(o, f.attname)) for f in fields), _prepare(pk, o.pk)) for o in objects
    ]
    with connection.cursor() as cursor:
        cursor.executemany(
            f'UPDATE {table} SET {sets} WHERE "{pk.column}" = %s',  # noqa: S608
            rows,
        )
