"""Platform events (the bridge's ``platform.<server>`` streams) into the trading tables.

``apply_messages`` is the consumer's body. It runs inside the consumer runner's transaction
(one per batch) and is idempotent and order-free on its own, whatever the runner does:

* deals: PostgreSQL COPYs the batch straight into the table (in a savepoint) and, only when
  one of them is stored already, stages it and runs ``INSERT … ON CONFLICT DO NOTHING
  RETURNING`` (SQLite: that multi-row insert); only the rows actually inserted go on;
* the account summary: per (server, login) the sums of the newly inserted deals are added
  (balance, credit, count) and the newest ticket/time kept (``GREATEST``) — sums commute, so
  duplicates and reordering cannot change the result;
* positions: upsert per (server, position) where the incoming ``time_update_msc`` is not older
  and the stored row is not closed (a delete that overtook an update wins);
* account snapshots (stop-out / margin-call events, polls): margin figures, newest wins;
* ``trading.deal_closed`` for every newly inserted closing trade deal, all of a batch in one
  ``trading.deals_closed`` batch event (consumers receive them one by one, see
  :class:`~brokerdesk.trading.events.DealsClosed`).
"""

from __future__ import annotations

import functools
import operator
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from django.db import IntegrityError, connection, transaction

from brokerdesk.core.bus.base import Message
from brokerdesk.core.events import emit_many
from brokerdesk.trading.bridge import (
    DEAL_BATCH_COLUMNS,
    DEALS_BATCH,
    POSITION_BATCH_COLUMNS,
    POSITIONS_BATCH,
)
from brokerdesk.trading.corrections import CORRECTION_TYPES, apply_corrections
from brokerdesk.trading.events import DEAL_CLOSED_FIELDS, DealsClosed
from brokerdesk.trading.platform.port import AccountState, DealAction, DealEntry

# A stored row: the server, the batch's columns with ``time`` beside ``time_msc``, and when it
# was ingested (one definition: the bridge's batch layout).
DEAL_COLUMNS = ("server", "deal", "time", *DEAL_BATCH_COLUMNS[1:], "ingested_msc")
POSITION_COLUMNS = ("server", *POSITION_BATCH_COLUMNS)
CLOSING_ENTRIES = frozenset(
    int(e) for e in (DealEntry.ENTRY_OUT, DealEntry.ENTRY_INOUT, DealEntry.ENTRY_OUT_BY)
)
TRADE_ACTIONS = frozenset(int(a) for a in (DealAction.DEAL_BUY, DealAction.DEAL_SELL))
_CREDIT_ACTIONS = frozenset(
    int(a) for a in (DealAction.DEAL_CREDIT, DealAction.DEAL_SO_COMPENSATION_CREDIT)
)
_CANCELED_ACTIONS = frozenset(
    int(a) for a in (DealAction.DEAL_BUY_CANCELED, DealAction.DEAL_SELL_CANCELED)
)
# Indexes into a deal row (DEAL_COLUMNS order) and a position row (POSITION_COLUMNS order).
_D = {name: i for i, name in enumerate(DEAL_COLUMNS)}
_P_UPDATE, _P_CLOSED = POSITION_COLUMNS.index("time_update_msc"), POSITION_COLUMNS.index("closed")
# The bridge's batch columns are in table order (a batch row is a table row without server,
# time and ingested_msc): tests/trading/test_ingest.py holds the two layouts together.
SQLITE_CHUNK = 1000  # rows per statement (SQLite allows 32,766 parameters)


@dataclass
class IngestResult:
    """What one batch changed."""

    deals_seen: int = 0
    deals_inserted: int = 0
    deals_duplicate: int = 0
    closed_events: int = 0
    positions: int = 0
    snapshots: int = 0
    users: int = 0
    logins: set[tuple[str, int]] = field(default_factory=set)


def now_msc() -> int:
    """Wall-clock milliseconds."""
    return time.time_ns() // 1_000_000


def _q(name: str) -> str:
    return f'"{name}"'


def _greatest() -> str:
    return "GREATEST" if connection.vendor == "postgresql" else "MAX"


def apply_messages(messages: Sequence[Message]) -> IngestResult:
    """Apply one batch of platform messages, atomically (a savepoint inside the consumer's
    transaction)."""
    with transaction.atomic():
        return _apply(messages)


def _apply(messages: Sequence[Message]) -> IngestResult:
    result = IngestResult()
    ingested = now_msc()
    deals: dict[tuple[str, int], list[Any]] = {}  # table rows, first copy of each ticket
    positions: dict[tuple[str, int], list[Any]] = {}  # table rows, newest state of each
    snapshots: list[tuple[str, dict[str, Any], int]] = []
    users: list[dict[str, Any]] = []
    has_corrections = False  # hook: trading.corrections
    for m in messages:
        kind = m.type
        p = m.payload
        if kind == DEALS_BATCH:
            rows = p["rows"]
            result.deals_seen += len(rows)
            for row in _batch_deal_rows(p["server"], p["columns"], rows, ingested):
                deals.setdefault((row[0], row[1]), row)
        elif kind == POSITIONS_BATCH:
            for row in _batch_position_rows(p["server"], p["columns"], p["rows"]):
                _keep_newest(positions, row)
        elif kind == "platform.deal.add":
            result.deals_seen += 1
            key = (p["server"], int(p["deal"]))
            if key not in deals:
                deals[key] = _deal_row(p, ingested)
        elif kind.startswith("platform.position."):
            _keep_newest(positions, _position_row(p, kind == "platform.position.delete"))
        elif kind.startswith("platform.account."):
            snapshots.append((p["server"], p, _occurred_msc(m)))
        elif kind in ("platform.user.add", "platform.user.update"):
            users.append(p)
        elif kind in CORRECTION_TYPES:  # hook: dealer corrections, resync snapshots
            has_corrections = True
    inserted = insert_deal_rows(list(deals.values())) if deals else []
    result.deals_inserted = len(inserted)
    result.deals_duplicate = result.deals_seen - len(inserted)
    login = _D["login"]
    touched: set[tuple[str, int]] = {(r[0], r[login]) for r in inserted}
    pos_logins = {(r[0], r[2]) for r in positions.values()}
    touched |= pos_logins
    touched |= {(s, int(p["login"])) for s, p, _ in snapshots}
    if connection.vendor == "postgresql":
        # positions first: the summary upsert computes open P/L and equity from them
        if positions:
            _upsert_positions(list(positions.values()))
        if touched:
            _upsert_summaries(inserted, touched, ingested)
    else:
        if touched:
            _upsert_summaries(inserted, touched, ingested)
        if positions:
            _upsert_positions(list(positions.values()))
            _refresh_open_pl(pos_logins, ingested)  # and their equity
        if touched - pos_logins:
            _refresh_equity(touched - pos_logins)
    result.positions = len(positions)
    for server, p, at in snapshots:
        apply_account_state(server, _state(p), at, now=ingested)
    result.snapshots = len(snapshots)
    for u in users:
        _apply_user(u)
    result.users = len(users)
    entry, action = _D["entry"], _D["action"]
    closed = [r for r in inserted if r[entry] in CLOSING_ENTRIES and r[action] in TRADE_ACTIONS]
    if closed:
        emit_many(_deals_closed(closed))
    result.closed_events = len(closed)
    result.logins = touched
    if has_corrections:  # hook: after this batch's deals and positions (trading.corrections)
        apply_corrections(messages)
    return result


def _keep_newest(positions: dict[tuple[str, int], list[Any]], row: list[Any]) -> None:
    """Keep one row per position: the newest update, a delete over an update of its time."""
    key = (row[0], row[1])
    old = positions.get(key)
    if old is None or (row[_P_UPDATE], row[_P_CLOSED]) >= (old[_P_UPDATE], old[_P_CLOSED]):
        positions[key] = row


def _batch_deal_rows(
    server: str, columns: Sequence[str], rows: list[list[Any]], ingested: int
) -> Iterable[list[Any]]:
    """Table rows of a ``platform.deals`` batch (its columns are the table's: one copy)."""
    if tuple(columns) != DEAL_BATCH_COLUMNS:  # another producer's layout: by name
        for values in rows:
            yield _deal_row({**dict(zip(columns, values, strict=True)), "server": server}, ingested)
        return
    fromtimestamp = datetime.fromtimestamp
    for r in rows:
        yield [server, r[0], fromtimestamp(r[1] / 1000, tz=UTC), *r[1:], ingested]


def _batch_position_rows(
    server: str, columns: Sequence[str], rows: list[list[Any]]
) -> Iterable[list[Any]]:
    """Table rows of a ``platform.positions`` batch."""
    if tuple(columns) != POSITION_BATCH_COLUMNS:
        for values in rows:
            p = {**dict(zip(columns, values, strict=True)), "server": server}
            yield _position_row(p, bool(p.get("closed")))
        return
    for r in rows:
        row = [server, *r]
        row[_P_CLOSED] = bool(row[_P_CLOSED])
        yield row


def _occurred_msc(m: Message) -> int:
    try:
        return int(datetime.fromisoformat(m.occurred_at).timestamp() * 1000)
    except ValueError:
        return now_msc()


def _state(p: dict[str, Any]) -> AccountState:
    return AccountState(
        login=int(p["login"]),
        currency_digits=int(p.get("currency_digits", 2)),
        balance=int(p.get("balance", 0)),
        credit=int(p.get("credit", 0)),
        equity=int(p.get("equity", 0)),
        margin=int(p.get("margin", 0)),
        margin_free=int(p.get("margin_free", 0)),
        margin_level=int(p.get("margin_level", 0)),
        profit=int(p.get("profit", 0)),
        storage=int(p.get("storage", 0)),
    )


_deal_closed_values = operator.itemgetter(*(_D[name] for name in DEAL_CLOSED_FIELDS))
#: Rows per ``trading.deals_closed`` event (a consumer batch holds at most 5,000 deals).
DEALS_CLOSED_MAX_ROWS = 5000


def _deals_closed(rows: list[list[Any]]) -> list[DealsClosed]:
    """The ``trading.deal_closed`` events of stored closing deal rows, as batch events (their
    columns found by name)."""
    values = list(map(_deal_closed_values, rows))
    return [
        DealsClosed(rows=values[i : i + DEALS_CLOSED_MAX_ROWS])
        for i in range(0, len(values), DEALS_CLOSED_MAX_ROWS)
    ]


# --- deals -------------------------------------------------------------------------------------


# The payload keys of a deal row after server, deal and time: a bridge payload has them all.
_ROW_KEYS = operator.itemgetter(*DEAL_COLUMNS[3:-1])


def _deal_row(d: dict[str, Any], ingested: int) -> list[Any]:
    t = int(d["time_msc"])
    try:  # every key present (the bridge's payload): one C call instead of 22 lookups
        v = _ROW_KEYS(d)
    except KeyError:
        pass
    else:
        return [
            d["server"],
            int(d["deal"]),
            datetime.fromtimestamp(t / 1000, tz=UTC),
            *map(int, v[:7]),  # time_msc … position_id
            v[7] or "",  # symbol
            *map(int, v[8:20]),  # volume … fee
            v[20] or "",  # comment
            v[21] or "",  # external_id
            ingested,
        ]
    return [
        d["server"],
        int(d["deal"]),
        datetime.fromtimestamp(t / 1000, tz=UTC),
        t,
        int(d["login"]),
        int(d["action"]),
        int(d["entry"]),
        int(d.get("reason", 0)),
        int(d.get("order", 0)),
        int(d.get("position_id", 0)),
        d.get("symbol", "") or "",
        int(d.get("volume", 0)),
        int(d.get("volume_ext", 0)),
        int(d.get("volume_closed", 0)),
        int(d.get("volume_closed_ext", 0)),
        int(d.get("price", 0)),
        int(d.get("digits", 0)),
        int(d.get("contract_size", 0)),
        int(d.get("currency_digits", 2)),
        int(d.get("profit", 0)),
        int(d.get("commission", 0)),
        int(d.get("storage", 0)),
        int(d.get("fee", 0)),
        d.get("comment", "") or "",
        d.get("external_id", "") or "",
        ingested,
    ]


def _stage(cursor: Any, table: str, columns: Sequence[str], rows: list[list[Any]]) -> None:
    """PostgreSQL: COPY ``rows`` into ``<table>_stage``, a temporary table emptied at commit."""
    cols = ", ".join(_q(c) for c in columns)
    cursor.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {table}_stage ON COMMIT DELETE ROWS AS "  # noqa: S608
        f"SELECT {cols} FROM {table} WITH NO DATA"
    )
    cursor.execute(f"TRUNCATE {table}_stage")  # in case no commit came in between (tests)
    copy_rows(cursor, f"{table}_stage", _column_types(table, tuple(columns)), cols, rows)


@functools.cache
def _column_types(table: str, columns: tuple[str, ...]) -> tuple[int, ...]:
    """The type OIDs of ``columns`` of ``table`` (built-in types: the same on every
    connection), for binary COPY."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attname, atttypid FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            [table],
        )
        oids = {name: int(oid) for name, oid in cursor.fetchall()}
    return tuple(oids[c] for c in columns)


def copy_rows(
    cursor: Any, table: str, types: Sequence[int], columns: str, rows: Iterable[Sequence[Any]]
) -> None:
    """PostgreSQL: COPY ``rows`` into ``table`` in the binary format (about a fifth of the
    client's CPU of text COPY, and no number parsing on the server; the values must match
    the column types exactly: ints, strings, datetimes, bools)."""
    with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        write = copy.write_row
        for row in rows:
            write(row)


def insert_deal_rows(rows: list[list[Any]]) -> list[list[Any]]:
    """Insert deal rows (``DEAL_COLUMNS`` order, one per (server, ticket)); return the ones
    that were new.

    PostgreSQL: first a plain ``COPY`` into the table, in key order, inside a savepoint — the
    common case, where no deal of the batch is stored yet, at about half the server's cost of
    the staged path. A duplicate (a redelivered batch, a catch-up overlap) makes it fail; then
    the staged path (COPY into a temporary table, ``INSERT … ON CONFLICT DO NOTHING
    RETURNING``) stores exactly the new ones. Key order: concurrent consumers that meet the
    same key wait for each other, they never deadlock.
    """
    columns = ", ".join(_q(c) for c in DEAL_COLUMNS)
    new_keys: set[tuple[str, int]] = set()
    if connection.vendor == "postgresql":
        rows.sort(key=_ROW_KEY)
        if _copy_all_new(rows, columns):
            return rows
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            _stage(cursor, "trading_deal", DEAL_COLUMNS, rows)
            cursor.execute(
                f"INSERT INTO trading_deal ({columns}) SELECT {columns} "  # noqa: S608
                # in key order: concurrent consumers wait on a duplicate's key, never deadlock
                "FROM trading_deal_stage ORDER BY server, deal "
                "ON CONFLICT DO NOTHING RETURNING server, deal"
            )
            new_keys.update((s, int(t)) for s, t in cursor.fetchall())
        else:
            adapt = connection.ops.adapt_datetimefield_value
            for i in range(0, len(rows), SQLITE_CHUNK):
                chunk = rows[i : i + SQLITE_CHUNK]
                marks = "(" + ", ".join(["%s"] * len(DEAL_COLUMNS)) + ")"
                params: list[Any] = []
                for row in chunk:
                    params.extend(row)
                    params[-len(row) + 2] = adapt(row[2])
                cursor.execute(
                    f"INSERT INTO trading_deal ({columns}) VALUES "  # noqa: S608
                    + ", ".join([marks] * len(chunk))
                    + " ON CONFLICT DO NOTHING RETURNING server, deal",
                    params,
                )
                new_keys.update((s, int(t)) for s, t in cursor.fetchall())
    return [r for r in rows if (r[0], r[1]) in new_keys]


_ROW_KEY = operator.itemgetter(0, 1)  # (server, deal) of a deal row


def _copy_all_new(rows: list[list[Any]], columns: str) -> bool:
    """COPY ``rows`` straight into ``trading_deal`` in a savepoint; False (and nothing
    written) when one of them is stored already."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            types = _column_types("trading_deal", DEAL_COLUMNS)
            copy_rows(cursor, "trading_deal", types, columns, rows)
    except (psycopg.errors.UniqueViolation, IntegrityError):
        return False
    return True


def balance_effect(d: dict[str, Any]) -> tuple[int, int]:
    """(balance change, credit change) of one deal, minor units."""
    amount = int(d.get("profit", 0))
    action = int(d["action"])
    if action in (DealAction.DEAL_CREDIT, DealAction.DEAL_SO_COMPENSATION_CREDIT):
        return 0, amount
    if action in (DealAction.DEAL_BUY_CANCELED, DealAction.DEAL_SELL_CANCELED):
        return 0, 0
    return (
        amount + int(d.get("commission", 0)) + int(d.get("storage", 0)) + int(d.get("fee", 0)),
        0,
    )


# --- summary -----------------------------------------------------------------------------------

_summary_values = operator.itemgetter(
    *(
        _D[name]
        for name in (
            "server",
            "deal",
            "time_msc",
            "login",
            "action",
            "currency_digits",
            "profit",
            "commission",
            "storage",
            "fee",
        )
    )
)


def _upsert_summaries(
    inserted: Iterable[list[Any]], touched: set[tuple[str, int]], now: int
) -> None:
    agg: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0, 2])
    for r in inserted:  # deal rows (DEAL_COLUMNS order); see balance_effect
        server, deal, time_msc, login, action, digits, amount, commission, storage, fee = (
            _summary_values(r)
        )
        a = agg[(server, login)]
        if action in _CREDIT_ACTIONS:
            a[1] += amount
        elif action not in _CANCELED_ACTIONS:
            a[0] += amount + commission + storage + fee
        a[2] += 1
        if deal > a[3]:
            a[3] = deal
        if time_msc > a[4]:
            a[4] = time_msc
        a[5] = digits
    rows: list[list[Any]] = []
    for key in sorted(touched):  # a fixed order: concurrent consumers lock rows alike
        bal, cred, n, ticket, tmsc, digits = agg.get(key, [0, 0, 0, 0, 0, 2])
        rows.append([key[0], key[1], digits, bal, cred, n, ticket, tmsc, now])
    g = _greatest()
    t = "trading_account_summary"
    sql_head = (
        f"INSERT INTO {t} (server, login, currency_digits, balance, credit, deals, "
        "last_deal_ticket, last_deal_time_msc, updated_msc, open_pl, equity, margin, "
        "margin_free, margin_level, state_time_msc) "
    )
    sql_tail = (
        " ON CONFLICT (server, login) DO UPDATE SET "
        f"balance = {t}.balance + excluded.balance, "
        f"credit = {t}.credit + excluded.credit, "
        f"deals = {t}.deals + excluded.deals, "
        f"last_deal_ticket = {g}({t}.last_deal_ticket, excluded.last_deal_ticket), "
        f"last_deal_time_msc = {g}({t}.last_deal_time_msc, excluded.last_deal_time_msc), "
        f"currency_digits = CASE WHEN excluded.deals > 0 THEN excluded.currency_digits "
        f"ELSE {t}.currency_digits END, "
        "updated_msc = excluded.updated_msc"
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Open P/L from the stored open positions (upserted before) and equity with it, in
            # the same statement: each summary row gets one new version per batch, not three.
            arrays = [list(col) for col in zip(*rows, strict=True)]
            cursor.execute(
                sql_head  # noqa: S608
                + "SELECT s, l, cd, b, c, n, tk, tm, u, op, b + c + op, 0, 0, 0, 0 FROM ("
                "SELECT x.*, COALESCE((SELECT SUM(p.profit + p.storage) FROM trading_position p "
                "WHERE p.server = x.s AND p.login = x.l AND NOT p.closed), 0) AS op FROM unnest("
                "%s::varchar[], %s::bigint[], %s::smallint[], %s::bigint[], %s::bigint[], "
                "%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[]) "
                "AS x(s, l, cd, b, c, n, tk, tm, u)) y"
                + sql_tail
                + ", open_pl = excluded.open_pl, equity = "
                f"{t}.balance + excluded.balance + {t}.credit + excluded.credit + excluded.open_pl",
                arrays,
            )
        else:
            for i in range(0, len(rows), SQLITE_CHUNK):
                chunk = rows[i : i + SQLITE_CHUNK]
                marks = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, 0, 0, 0, 0, 0, 0)"
                cursor.execute(
                    sql_head + "VALUES " + ", ".join([marks] * len(chunk)) + sql_tail,
                    [v for row in chunk for v in row],
                )


def _by_server(keys: Iterable[tuple[str, int]]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = defaultdict(list)
    for server, login in sorted(keys):
        grouped[server].append(login)
    return grouped


def _login_filter(logins: list[int]) -> tuple[str, list[Any]]:
    if connection.vendor == "postgresql":
        return "login = ANY(%s)", [logins]
    return "login IN (" + ", ".join(["%s"] * len(logins)) + ")", list(logins)


def _refresh_open_pl(keys: set[tuple[str, int]], now: int) -> None:
    """Open P/L from the stored open positions, and equity with it (one statement)."""
    t = "trading_account_summary"
    open_pl = (
        "COALESCE((SELECT SUM(p.profit + p.storage) FROM trading_position p "  # noqa: S608
        f"WHERE p.server = {t}.server AND p.login = {t}.login AND NOT p.closed), 0)"
    )
    with connection.cursor() as cursor:
        for server, logins in _by_server(keys).items():
            for i in range(0, len(logins), SQLITE_CHUNK):
                where, params = _login_filter(logins[i : i + SQLITE_CHUNK])
                cursor.execute(
                    f"UPDATE {t} SET open_pl = {open_pl}, "  # noqa: S608
                    f"equity = balance + credit + {open_pl}, updated_msc = %s "
                    f"WHERE server = %s AND {where}",
                    [now, server, *params],
                )


def _refresh_equity(keys: set[tuple[str, int]]) -> None:
    with connection.cursor() as cursor:
        for server, logins in _by_server(keys).items():
            for i in range(0, len(logins), SQLITE_CHUNK):
                where, params = _login_filter(logins[i : i + SQLITE_CHUNK])
                cursor.execute(
                    "UPDATE trading_account_summary SET equity = balance + credit + open_pl "  # noqa: S608
                    f"WHERE server = %s AND {where}",
                    [server, *params],
                )


def apply_account_state(server: str, state: AccountState, at_msc: int, *, now: int = 0) -> bool:
    """Margin figures from a snapshot taken at ``at_msc``; an older one changes nothing."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO trading_account_summary (server, login, currency_digits, balance, "
            "credit, deals, last_deal_ticket, last_deal_time_msc, updated_msc, open_pl, equity, "
            "margin, margin_free, margin_level, state_time_msc) "
            "VALUES (%s, %s, %s, 0, 0, 0, 0, 0, %s, 0, 0, 0, 0, 0, 0) "
            "ON CONFLICT (server, login) DO NOTHING",
            [server, state.login, state.currency_digits, now or now_msc()],
        )
        cursor.execute(
            "UPDATE trading_account_summary SET margin = %s, margin_free = %s, "
            "margin_level = %s, state_time_msc = %s, updated_msc = %s "
            "WHERE server = %s AND login = %s AND state_time_msc <= %s",
            [
                state.margin,
                state.margin_free,
                state.margin_level,
                at_msc,
                now or now_msc(),
                server,
                state.login,
                at_msc,
            ],
        )
        return bool(cursor.rowcount)


# --- positions and users -----------------------------------------------------------------------


def _position_row(p: dict[str, Any], closed: bool) -> list[Any]:
    return [
        p["server"],
        int(p["position"]),
        int(p["login"]),
        p.get("symbol", ""),
        int(p.get("action", 0)),
        int(p.get("volume", 0)),
        int(p.get("price_open", 0)),
        int(p.get("price_current", 0)),
        int(p.get("digits", 0)),
        int(p.get("contract_size", 0)),
        int(p.get("profit", 0)),
        int(p.get("storage", 0)),
        int(p.get("currency_digits", 2)),
        int(p.get("time_create_msc", 0)),
        int(p.get("time_update_msc", 0)),
        closed,
    ]


def _upsert_positions(positions: list[list[Any]]) -> None:
    rows = sorted(positions, key=_ROW_KEY)  # (server, position): a fixed lock order
    t = "trading_position"
    cols = ", ".join(POSITION_COLUMNS)
    updates = ", ".join(
        f"{c} = excluded.{c}" for c in POSITION_COLUMNS if c not in ("server", "position")
    )
    tail = (
        f" ON CONFLICT (server, position) DO UPDATE SET {updates} "
        f"WHERE NOT {t}.closed AND excluded.time_update_msc >= {t}.time_update_msc"
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            _stage(cursor, t, POSITION_COLUMNS, rows)
            cursor.execute(
                f"INSERT INTO {t} ({cols}) SELECT {cols} FROM {t}_stage" + tail  # noqa: S608
            )
        else:
            marks = "(" + ", ".join(["%s"] * len(POSITION_COLUMNS)) + ")"
            for i in range(0, len(rows), SQLITE_CHUNK):
                chunk = rows[i : i + SQLITE_CHUNK]
                cursor.execute(
                    f"INSERT INTO {t} ({cols}) VALUES "  # noqa: S608
                    + ", ".join([marks] * len(chunk))
                    + tail,
                    [v for row in chunk for v in row],
                )


def _apply_user(p: dict[str, Any]) -> None:
    """Group and leverage changes of a login we know (other logins are not ours)."""
    from brokerdesk.trading.models import TradingAccount

    TradingAccount.objects.filter(server=p["server"], login=int(p["login"])).exclude(
        group=p.get("group", ""), leverage=int(p.get("leverage", 0))
    ).update(
        group=p.get("group", ""),
        leverage=int(p.get("leverage", 0)),
        updated_at=datetime.now(UTC),
    )
