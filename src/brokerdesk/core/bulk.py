"""Fast bulk writes (the ledger's batch engine, the relay, consumers): few statements.

On PostgreSQL a small batch is written in ONE round trip — a statement whose data-modifying
CTEs insert every table from ``unnest(arrays)`` and whose body updates the balances — and a
large batch by ``COPY`` per table plus one ``UPDATE … FROM unnest(arrays)``. Elsewhere
(SQLite) it is ``executemany``. Values for SQLite are prepared by the model fields.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from django.db import connection, models


def _prepare(field: models.Field[Any, Any], value: Any) -> Any:
    if isinstance(field, models.JSONField):
        return json.dumps(value, default=str)
    if connection.vendor == "postgresql":
        return value  # psycopg adapts uuid, datetime, int, bool, str and None itself
    return field.get_db_prep_save(value, connection)


_MISSING = object()


def _value(obj: Any, field: models.Field[Any, Any]) -> Any:
    """The object's value for a column, or the field's default when the object has none."""
    value = getattr(obj, field.attname, _MISSING)
    return field.get_default() if value is _MISSING else value


def _pg_type(field: models.Field[Any, Any]) -> str:
    if isinstance(field, models.JSONField):
        return "text"
    db_type = field.db_type(connection) or "text"
    return db_type.split("(")[0] if db_type.startswith("varchar") else db_type


def _columns(model: type[models.Model], names: Sequence[str]) -> list[models.Field[Any, Any]]:
    return [model._meta.get_field(name) for name in names]  # type: ignore[misc]


SMALL_BATCH_ROWS = 400


def _insert_fields(model: type[models.Model]) -> list[models.Field[Any, Any]]:
    return [f for f in model._meta.concrete_fields if not isinstance(f, models.AutoField)]


def _pg_arrays(fields: Sequence[models.Field[Any, Any]], objects: Sequence[Any]) -> list[list[Any]]:
    return [[_prepare(f, _value(o, f)) for o in objects] for f in fields]


def _pg_insert_sql(model: type[models.Model]) -> str:
    fields = _insert_fields(model)
    columns = ", ".join(f'"{f.column}"' for f in fields)
    selects = ", ".join(
        f"v{i}::jsonb" if isinstance(f, models.JSONField) else f"v{i}" for i, f in enumerate(fields)
    )
    unnest = ", ".join(f"%s::{_pg_type(f)}[]" for f in fields)
    aliases = ", ".join(f"v{i}" for i in range(len(fields)))
    return (
        f"INSERT INTO {model._meta.db_table} ({columns}) "  # noqa: S608 - names from models
        f"SELECT {selects} FROM unnest({unnest}) AS t({aliases})"
    )


def _pg_update_sql(model: type[models.Model], names: Sequence[str]) -> str:
    fields = _columns(model, names)
    pk = model._meta.pk
    assert pk is not None
    table = model._meta.db_table
    unnest = ", ".join(f"%s::{_pg_type(f)}[]" for f in [pk, *fields])
    aliases = ", ".join(f"v{i}" for i in range(len(fields) + 1))
    sets = ", ".join(f'"{f.column}" = u.v{i + 1}' for i, f in enumerate(fields))
    return (
        f"UPDATE {table} SET {sets} FROM unnest({unnest}) AS u({aliases}) "  # noqa: S608
        f'WHERE {table}."{pk.column}" = u.v0'
    )


def write_batch(
    inserts: Sequence[tuple[type[models.Model], Sequence[Any]]],
    update_model: type[models.Model],
    update_fields: Sequence[str],
    updated: Sequence[Any],
) -> None:
    """Insert rows into several tables and update others, as few round trips as possible."""
    rows = sum(len(objects) for _, objects in inserts) + len(updated)
    if connection.vendor != "postgresql" or rows > SMALL_BATCH_ROWS or not updated:
        for model, objects in inserts:
            insert(model, objects)
        update(update_model, update_fields, updated)
        return
    ctes, params = [], []
    for index, (model, objects) in enumerate(inserts):
        if objects:
            ctes.append(f"i{index} AS ({_pg_insert_sql(model)})")
            params.extend(_pg_arrays(_insert_fields(model), objects))
    pk = update_model._meta.pk
    assert pk is not None
    params.extend(_pg_arrays([pk, *_columns(update_model, update_fields)], updated))
    sql = (f"WITH {', '.join(ctes)} " if ctes else "") + _pg_update_sql(update_model, update_fields)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def insert(model: type[models.Model], objects: Sequence[Any]) -> None:
    """Insert ``objects`` (model instances) with every concrete field but an auto id."""
    if not objects:
        return
    fields = _insert_fields(model)
    table = model._meta.db_table
    column_list = ", ".join(f'"{f.column}"' for f in fields)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            json_columns = {i for i, f in enumerate(fields) if isinstance(f, models.JSONField)}
            raw = cursor.cursor  # psycopg's own cursor: COPY is the fastest way in
            with raw.copy(f"COPY {table} ({column_list}) FROM STDIN") as copy:
                for o in objects:
                    row = [_value(o, f) for f in fields]
                    for i in json_columns:
                        row[i] = json.dumps(row[i], default=str)
                    copy.write_row(row)
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
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(_pg_update_sql(model, names), _pg_arrays([pk, *fields], objects))
        else:
            sets = ", ".join(f'"{f.column}" = %s' for f in fields)
            rows = [
                (*(_prepare(f, getattr(o, f.attname)) for f in fields), _prepare(pk, o.pk))
                for o in objects
            ]
            cursor.executemany(
                f'UPDATE {table} SET {sets} WHERE "{pk.column}" = %s',  # noqa: S608
                rows,
            )
