"""Dealer corrections of stored deals, and the bridge's resynchronisation snapshots.

Called by the ingest consumer (:func:`brokerdesk.trading.ingest.apply_messages`) with the
whole batch, after the batch's new deals and positions were written, for three message types:

* ``platform.deal.update`` / ``platform.deal.delete`` (MT5 ``IMTDealSink::OnDealUpdate`` /
  ``OnDealDelete``): the payload is the deal's **new** state (for a delete, its last one). A
  correction is ordered by its platform time (the message's ``occurred_at``, ``version_msc``):
  one older than the newest applied to that deal changes nothing, a repeat of the same state
  changes nothing, a delete is final (a late update does not bring the deal back). Applying it
  rewrites the deal's row in ``trading_deal`` (a delete leaves the row, as history, and marks it
  in ``trading_deal_correction``), moves the account summary by after - before, and emits
  ``trading.deal_corrected``. A correction of a deal not stored yet stores the deal in its
  corrected state (or as deleted), so the ``deal.add`` that comes later is a duplicate; a
  closing trade stored that way emits ``trading.deal_closed`` with its corrected figures.
* ``platform.snapshot.positions`` (published by :mod:`brokerdesk.trading.resync` after a
  reconnect): every open position on the server. Positions in it are upserted (a newer stored
  state wins, a closed one stays closed); open positions of the server missing from it were
  closed during the outage and are marked closed — unless they were opened after the snapshot
  was taken (server clock, when the platform tells it) or a later message of the same batch
  mentions them. So a snapshot redelivered late closes nothing that opened since. Open P/L
  and equity of the logins concerned are recomputed.

Account snapshots of the resync (``platform.account.update``) are ordinary account messages,
applied by the ingest consumer (newest wins).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import connection

from brokerdesk.core.bus.base import Message
from brokerdesk.core.events import DomainEvent, emit_many
from brokerdesk.trading.events import DealClosed, DealCorrected
from brokerdesk.trading.platform.port import DealAction, DealEntry

# (The ingest module imports this one: what is shared with it is imported inside functions.)

DEAL_UPDATE = "platform.deal.update"
DEAL_DELETE = "platform.deal.delete"
POSITIONS_SNAPSHOT = "platform.snapshot.positions"
#: Message types this module applies (the ingest consumer hands it batches holding them).
CORRECTION_TYPES = frozenset({DEAL_UPDATE, DEAL_DELETE, POSITIONS_SNAPSHOT})

#: The state of a deal carried in ``before`` / ``after`` (``trading_deal`` column names).
STATE_FIELDS = (
    "login",
    "action",
    "entry",
    "reason",
    "order",
    "position_id",
    "symbol",
    "volume",
    "volume_ext",
    "volume_closed",
    "volume_closed_ext",
    "price",
    "digits",
    "contract_size",
    "currency_digits",
    "profit",
    "commission",
    "storage",
    "fee",
    "comment",
    "external_id",
    "time_msc",
)
#: What a correction may change (a deal keeps its ticket, login and time: ``time`` is part of
#: the partitioned table's key).
MUTABLE_FIELDS = tuple(f for f in STATE_FIELDS if f not in ("login", "time_msc"))
_TEXT = frozenset({"symbol", "comment", "external_id"})
DELTA_FIELDS = (
    "profit",
    "commission",
    "storage",
    "fee",
    "volume",
    "volume_ext",
    "volume_closed",
    "volume_closed_ext",
)
POSITION_COLUMNS = (
    "server",
    "position",
    "login",
    "symbol",
    "action",
    "volume",
    "price_open",
    "price_current",
    "digits",
    "contract_size",
    "profit",
    "storage",
    "currency_digits",
    "time_create_msc",
    "time_update_msc",
    "closed",
)
CLOSING_ENTRIES = frozenset({DealEntry.ENTRY_OUT, DealEntry.ENTRY_INOUT, DealEntry.ENTRY_OUT_BY})
TRADE_ACTIONS = frozenset({DealAction.DEAL_BUY, DealAction.DEAL_SELL})


def now_msc() -> int:
    """Wall-clock milliseconds."""
    return time.time_ns() // 1_000_000


def balance_effect(d: dict[str, Any]) -> tuple[int, int]:
    """(balance change, credit change) of one deal: the ingest consumer's own rule."""
    from brokerdesk.trading.ingest import balance_effect as ingest_balance_effect

    return ingest_balance_effect(d)


@dataclass
class CorrectionResult:
    """What one batch's corrections and snapshots changed."""

    applied: int = 0  # corrections that changed a stored deal (or stored a new one)
    ignored: int = 0  # stale, repeated, or after a delete
    early: int = 0  # corrections of deals not stored yet (stored in their corrected state)
    positions_upserted: int = 0
    positions_closed: int = 0
    logins: set[tuple[str, int]] = field(default_factory=set)


def occurred_msc(message: Message) -> int:
    """The message's ``occurred_at`` as milliseconds (the platform time of the change)."""
    try:
        return int(datetime.fromisoformat(message.occurred_at).timestamp() * 1000)
    except ValueError:
        return now_msc()


def apply_corrections(messages: Sequence[Message]) -> CorrectionResult:
    """Apply the batch's corrections and position snapshots, in stream order.

    Runs inside the ingest consumer's transaction; idempotent (a batch delivered again changes
    nothing and emits nothing).
    """
    result = CorrectionResult()
    events: list[DomainEvent] = []
    now = now_msc()
    for index, m in enumerate(messages):
        if m.type in (DEAL_UPDATE, DEAL_DELETE):
            change = "delete" if m.type == DEAL_DELETE else "update"
            event = apply_deal_correction(m.payload, change, occurred_msc(m), now, result)
            if event is not None:
                events.append(event)
        elif m.type == POSITIONS_SNAPSHOT:
            later = _positions_mentioned(messages[index + 1 :], m.payload["server"])
            apply_positions_snapshot(m.payload, now, result, keep_open=later)
    if result.logins:
        _refresh_equity(result.logins)
    if events:
        emit_many(events)
    return result


# --- deals -------------------------------------------------------------------------------------


def _state(p: dict[str, Any]) -> dict[str, Any]:
    """The deal fields of a payload (a ``Deal.to_dict()`` or a stored row), typed."""
    return {f: (str(p.get(f) or "") if f in _TEXT else int(p.get(f) or 0)) for f in STATE_FIELDS}


def _load_deal(server: str, ticket: int) -> dict[str, Any] | None:
    cols = ", ".join(f'"{c}"' for c in STATE_FIELDS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {cols} FROM trading_deal WHERE server = %s AND deal = %s",  # noqa: S608
            [server, ticket],
        )
        row = cursor.fetchone()
    return _state(dict(zip(STATE_FIELDS, row, strict=True))) if row else None


def _insert_deal(server: str, ticket: int, state: dict[str, Any], now: int) -> None:
    from brokerdesk.trading.models import TradingDeal

    TradingDeal.objects.bulk_create(
        [
            TradingDeal(
                server=server,
                deal=ticket,
                time=datetime.fromtimestamp(state["time_msc"] / 1000, tz=UTC),
                ingested_msc=now,
                **state,
            )
        ],
        ignore_conflicts=True,
    )


def _update_deal(server: str, ticket: int, state: dict[str, Any]) -> None:
    sets = ", ".join(f'"{c}" = %s' for c in MUTABLE_FIELDS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE trading_deal SET {sets} WHERE server = %s AND deal = %s",  # noqa: S608
            [state[c] for c in MUTABLE_FIELDS] + [server, ticket],
        )


def _delta(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, int]:
    b = before or {}
    a = after or {}
    delta = {f: int(a.get(f, 0)) - int(b.get(f, 0)) for f in DELTA_FIELDS}
    bal0, cred0 = balance_effect(b) if before else (0, 0)
    bal1, cred1 = balance_effect(a) if after else (0, 0)
    delta["balance"] = bal1 - bal0
    delta["credit"] = cred1 - cred0
    return delta


def _is_closing_trade(state: dict[str, Any]) -> bool:
    return int(state["entry"]) in CLOSING_ENTRIES and int(state["action"]) in TRADE_ACTIONS


def apply_deal_correction(
    payload: dict[str, Any],
    change: str,
    version_msc: int,
    now: int,
    result: CorrectionResult | None = None,
) -> DomainEvent | None:
    """Apply one correction (``change`` "update" or "delete") to the stored deal; returns the
    event to emit (``trading.deal_corrected``, or ``trading.deal_closed`` for a closing trade
    first stored by its correction), or None when nothing changed downstream."""
    from brokerdesk.trading.models import TradingDealCorrection

    result = result if result is not None else CorrectionResult()
    server = str(payload["server"])
    ticket = int(payload["deal"])
    incoming = _state(payload)
    login = int(incoming["login"])
    record = (
        TradingDealCorrection.objects.select_for_update().filter(server=server, deal=ticket).first()
    )
    if record is not None and (record.deleted or version_msc < record.version_msc):
        result.ignored += 1  # a delete is final; an older correction is stale
        return None
    if record is None:
        record = TradingDealCorrection(server=server, deal=ticket, login=login)
    current = _load_deal(server, ticket)
    event: DomainEvent | None = None
    entry: dict[str, Any] | None = None
    if current is None:
        # The deal itself has not been stored yet: store it as it now is (or as deleted);
        # its deal.add, when it comes, is a duplicate.
        _insert_deal(server, ticket, incoming, now)
        result.early += 1
        entry = {"change": change, "version_msc": version_msc, "before": None, "after": None}
        if change == "update":
            bal, cred = balance_effect(incoming)
            _bump_summary(server, incoming, bal, cred, 1, now, ticket=ticket)
            entry["after"] = incoming
            if _is_closing_trade(incoming):
                event = _deal_closed(server, ticket, incoming)
        result.applied += 1
    elif change == "delete":
        bal, cred = balance_effect(current)
        _bump_summary(server, current, -bal, -cred, -1, now)
        entry = {"change": change, "version_msc": version_msc, "before": current, "after": None}
        event = DealCorrected(
            server=server,
            login=login,
            deal=ticket,
            change=change,
            version_msc=version_msc,
            before=current,
            after=None,
            delta=_delta(current, None),
        )
        result.applied += 1
    else:
        after = {**current, **{f: incoming[f] for f in MUTABLE_FIELDS}}
        if after == current:
            result.ignored += 1  # a repeat (or a change of nothing we store)
        else:
            _update_deal(server, ticket, after)
            delta = _delta(current, after)
            _bump_summary(server, after, delta["balance"], delta["credit"], 0, now)
            entry = {
                "change": change,
                "version_msc": version_msc,
                "before": current,
                "after": after,
            }
            event = DealCorrected(
                server=server,
                login=login,
                deal=ticket,
                change=change,
                version_msc=version_msc,
                before=current,
                after=after,
                delta=delta,
            )
            result.applied += 1
    record.version_msc = max(record.version_msc, version_msc)
    record.updated_msc = now
    if change == "delete":
        record.deleted = True
    if entry is not None:
        record.revisions += 1
        record.history = [*record.history, entry]
    record.save()
    result.logins.add((server, login))
    return event


def _deal_closed(server: str, ticket: int, d: dict[str, Any]) -> DealClosed:
    return DealClosed(
        server=server,
        login=int(d["login"]),
        deal=ticket,
        position_id=int(d["position_id"]),
        symbol=str(d["symbol"]),
        action=int(d["action"]),
        entry=int(d["entry"]),
        reason=int(d["reason"]),
        volume=int(d["volume"]),
        volume_ext=int(d["volume_ext"]),
        volume_closed=int(d["volume_closed"]),
        volume_closed_ext=int(d["volume_closed_ext"]),
        profit=int(d["profit"]),
        commission=int(d["commission"]),
        storage=int(d["storage"]),
        fee=int(d["fee"]),
        currency_digits=int(d["currency_digits"]),
        time_msc=int(d["time_msc"]),
    )


# --- the account summary -----------------------------------------------------------------------


def _greatest() -> str:
    return "GREATEST" if connection.vendor == "postgresql" else "MAX"


def _bump_summary(
    server: str,
    deal: dict[str, Any],
    balance: int,
    credit: int,
    deals: int,
    now: int,
    *,
    ticket: int = 0,
) -> None:
    """Add a correction's balance, credit and deal-count change to the login's summary
    (``ticket``: a deal newly stored, for the last-deal columns)."""
    t = "trading_account_summary"
    g = _greatest()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {t} (server, login, currency_digits, balance, credit, deals, "  # noqa: S608
            "last_deal_ticket, last_deal_time_msc, updated_msc, open_pl, equity, margin, "
            "margin_free, margin_level, state_time_msc) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 0, 0, 0, 0, 0, 0) "
            "ON CONFLICT (server, login) DO UPDATE SET "
            f"balance = {t}.balance + excluded.balance, "
            f"credit = {t}.credit + excluded.credit, "
            f"deals = {t}.deals + excluded.deals, "
            f"last_deal_ticket = {g}({t}.last_deal_ticket, excluded.last_deal_ticket), "
            f"last_deal_time_msc = {g}({t}.last_deal_time_msc, excluded.last_deal_time_msc), "
            "updated_msc = excluded.updated_msc",
            [
                server,
                int(deal["login"]),
                int(deal.get("currency_digits", 2)),
                balance,
                credit,
                deals,
                ticket,
                int(deal.get("time_msc", 0)) if ticket else 0,
                now,
            ],
        )


def _refresh_equity(keys: Iterable[tuple[str, int]]) -> None:
    by_server: dict[str, list[int]] = {}
    for server, login in sorted(keys):
        by_server.setdefault(server, []).append(login)
    with connection.cursor() as cursor:
        for server, logins in by_server.items():
            for i in range(0, len(logins), 500):
                chunk = logins[i : i + 500]
                cursor.execute(
                    "UPDATE trading_account_summary SET equity = balance + credit + open_pl "  # noqa: S608
                    f"WHERE server = %s AND login IN ({', '.join(['%s'] * len(chunk))})",
                    [server, *chunk],
                )


# --- positions snapshot ------------------------------------------------------------------------


def _positions_mentioned(messages: Sequence[Message], server: str) -> set[int]:
    """Positions named by position events after the snapshot in the same batch (newer than
    it: the snapshot must not close a position opened after it was taken)."""
    named: set[int] = set()
    for m in messages:
        if m.payload.get("server") != server:
            continue
        if m.type.startswith("platform.position."):
            named.add(int(m.payload["position"]))
        elif m.type == "platform.positions":  # the bridge's columnar batch
            at = list(m.payload["columns"]).index("position")
            named.update(int(row[at]) for row in m.payload["rows"])
    return named


def _position_row(server: str, p: dict[str, Any]) -> list[Any]:
    return [
        server,
        int(p["position"]),
        int(p["login"]),
        str(p.get("symbol", "")),
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
        False,
    ]


def apply_positions_snapshot(
    payload: dict[str, Any],
    now: int,
    result: CorrectionResult | None = None,
    *,
    keep_open: set[int] | None = None,
) -> CorrectionResult:
    """Reconcile the server's stored open positions with a snapshot of all of them."""
    result = result if result is not None else CorrectionResult()
    server = str(payload["server"])
    positions = list(payload.get("positions") or [])
    t = "trading_position"
    cols = ", ".join(POSITION_COLUMNS)
    marks = ", ".join(["%s"] * len(POSITION_COLUMNS))
    updates = ", ".join(
        f"{c} = excluded.{c}" for c in POSITION_COLUMNS if c not in ("server", "position")
    )
    seen = {int(p["position"]) for p in positions}
    logins: set[int] = {int(p["login"]) for p in positions}
    with connection.cursor() as cursor:
        if positions:
            cursor.executemany(
                f"INSERT INTO {t} ({cols}) VALUES ({marks}) "  # noqa: S608
                f"ON CONFLICT (server, position) DO UPDATE SET {updates} "
                f"WHERE NOT {t}.closed AND excluded.time_update_msc >= {t}.time_update_msc",
                [_position_row(server, p) for p in positions],
            )
        cursor.execute(
            f"SELECT position, login, time_create_msc FROM {t} "  # noqa: S608
            "WHERE server = %s AND NOT closed",
            [server],
        )
        # Opened after the snapshot was taken (server clock): not in it, still open.
        taken = payload.get("server_time_msc")
        gone = [
            (int(pos), int(login))
            for pos, login, created in cursor.fetchall()
            if int(pos) not in seen
            and int(pos) not in (keep_open or set())
            and (taken is None or int(created) <= int(taken))
        ]
        if gone:
            cursor.executemany(
                f"UPDATE {t} SET closed = %s WHERE server = %s AND position = %s",  # noqa: S608
                [[True, server, pos] for pos, _ in gone],
            )
        logins |= {login for _, login in gone}
        ordered = sorted(logins)
        cursor.executemany(
            "INSERT INTO trading_account_summary (server, login, currency_digits, balance, "
            "credit, deals, last_deal_ticket, last_deal_time_msc, updated_msc, open_pl, "
            "equity, margin, margin_free, margin_level, state_time_msc) "
            "VALUES (%s, %s, 2, 0, 0, 0, 0, 0, %s, 0, 0, 0, 0, 0, 0) "
            "ON CONFLICT (server, login) DO NOTHING",
            [[server, login, now] for login in ordered],
        )
        s = "trading_account_summary"
        for i in range(0, len(ordered), 500):
            chunk = ordered[i : i + 500]
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(
                f"UPDATE {s} SET open_pl = COALESCE((SELECT SUM(p.profit + p.storage) "  # noqa: S608
                f"FROM trading_position p WHERE p.server = {s}.server AND p.login = {s}.login "
                f"AND NOT p.closed), 0), updated_msc = %s WHERE server = %s AND login IN ({marks})",
                [now, server, *chunk],
            )
    result.positions_upserted += len(positions)
    result.positions_closed += len(gone)
    result.logins |= {(server, login) for login in logins}
    return result
