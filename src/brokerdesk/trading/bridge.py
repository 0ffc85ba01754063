"""The bridge: one platform server's events onto one bus stream, without gaps.

It subscribes (before connecting, as MT5 wants), connects, catches up on the deals it missed
(every ticket above its persisted checkpoint, minus a safety margin for events the server
reordered), then forwards live events in batches to ``publish``. When the link drops it
reconnects with exponential backoff and full jitter and catches up again. Delivery is at least
once: a deal may be published twice (live and by catch-up); consumers dedupe on
(server, ticket), and every ``deal.add`` message has the same ``event_id`` each time.

Stream: ``platform.<server>``; message types ``platform.deal.add``, ``platform.position.update``…
With ``BridgeConfig.batch_rows`` > 0 (the ``brokerdesk bridge`` command on Redis Streams) the
deals and position events of a published batch travel as columnar messages instead, up to
``batch_rows`` rows each: ``platform.deals`` (``{"server", "columns": DEAL_BATCH_COLUMNS,
"rows": [[…], …]}``) and ``platform.positions`` (``POSITION_BATCH_COLUMNS``, ``closed`` 1 for
a ``position.delete``). No per-deal dict, message, id or timestamp string on either side; the
consumer dedupes on (server, ticket) as before. Other events stay one message each, in order.
"""

from __future__ import annotations

import hashlib
import logging
import operator
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from brokerdesk.core.bus.base import Message
from brokerdesk.core.ids import new_id
from brokerdesk.trading.platform.port import (
    Deal,
    EventKind,
    PlatformError,
    PlatformEvent,
    PlatformPort,
)
from brokerdesk.trading.resync import resync_after_catch_up

log = logging.getLogger(__name__)

Publisher = Callable[[list[Message]], None]
EVENT_NAMESPACE = uuid.UUID("8f6b1c52-3d0e-4a7e-9a51-6f0f3c1d2b77")
_NAMESPACE_BYTES = EVENT_NAMESPACE.bytes


_MESSAGE_TYPES = {kind: f"platform.{kind.value}" for kind in EventKind}

#: Columnar batch messages (see the module's docstring) and their columns, in the order of
#: ``trading_deal`` / ``trading_position`` (the consumer copies a row with almost no work).
DEALS_BATCH = "platform.deals"
DEAL_BATCH_COLUMNS = (
    "deal",
    "time_msc",
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
)
POSITIONS_BATCH = "platform.positions"
POSITION_BATCH_COLUMNS = (
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
_deal_values = operator.attrgetter(*DEAL_BATCH_COLUMNS)
_position_values = operator.attrgetter(*POSITION_BATCH_COLUMNS[:-1])
_POSITION_KINDS = {
    EventKind.POSITION_ADD: 0,
    EventKind.POSITION_UPDATE: 0,
    EventKind.POSITION_DELETE: 1,
}


def stream_name(server: str) -> str:
    """The bus stream a server's events go to."""
    return f"platform.{server}"


def deal_event_id(server: str, ticket: int) -> str:
    """The same UUID every time a given deal is published (live or by catch-up): the UUIDv5
    of ``server:deal.add:ticket``, computed without the ``uuid`` module's objects (hot path)."""
    name = f"{server}:deal.add:{ticket}".encode()
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name).digest())  # noqa: S324 (RFC 4122)
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest[:16].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# --- checkpoint ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """The newest deal published for a server."""

    last_ticket: int = 0
    last_time_msc: int = 0


class CheckpointStore(Protocol):
    """Where a bridge keeps its checkpoint between runs."""

    def load(self, server: str) -> Checkpoint:
        """The saved checkpoint, or an empty one."""
        ...

    def save(self, server: str, checkpoint: Checkpoint) -> None:
        """Persist (only ever forward)."""
        ...


class MemoryCheckpointStore:
    """A checkpoint store in memory (tests)."""

    def __init__(self) -> None:
        self.saved: dict[str, Checkpoint] = {}

    def load(self, server: str) -> Checkpoint:
        """The saved checkpoint."""
        return self.saved.get(server, Checkpoint())

    def save(self, server: str, checkpoint: Checkpoint) -> None:
        """Keep it."""
        self.saved[server] = checkpoint


class DbCheckpointStore:
    """The checkpoint in ``trading_bridge_checkpoint`` (one row per server)."""

    def close(self) -> None:
        """Close this thread's database connections (the bridge runs on its own thread)."""
        from django.db import connections

        connections.close_all()

    def load(self, server: str) -> Checkpoint:
        """The saved checkpoint."""
        from brokerdesk.trading.models import BridgeCheckpoint

        row = BridgeCheckpoint.objects.filter(server=server).first()
        return Checkpoint(row.last_ticket, row.last_time_msc) if row else Checkpoint()

    def save(self, server: str, checkpoint: Checkpoint) -> None:
        """Upsert the row; a smaller ticket never overwrites a larger one."""
        from django.db.models import F
        from django.db.models.functions import Greatest

        from brokerdesk.trading.models import BridgeCheckpoint

        updated = BridgeCheckpoint.objects.filter(server=server).update(
            last_ticket=Greatest(F("last_ticket"), checkpoint.last_ticket),
            last_time_msc=Greatest(F("last_time_msc"), checkpoint.last_time_msc),
        )
        if not updated:
            BridgeCheckpoint.objects.get_or_create(
                server=server,
                defaults={
                    "last_ticket": checkpoint.last_ticket,
                    "last_time_msc": checkpoint.last_time_msc,
                },
            )


# --- bridge ----------------------------------------------------------------------------------


@dataclass
class BridgeConfig:
    """Tuning."""

    batch_size: int = 2000
    batch_wait: float = 0.05  # seconds to fill a batch
    poll_wait: float = 0.005  # seconds between takes from the event queue within a batch
    backoff_initial: float = 0.2
    backoff_max: float = 30.0
    #: Re-read this many tickets below the checkpoint after reconnecting: a server that pushed
    #: events out of order may have delivered N+1 but not N before the link dropped.
    catchup_margin: int = 1000
    catchup_page: int = 10_000
    #: Time overlap for platforms that search deals by time (MT5 ``DealRequestByGroup``).
    catchup_overlap_ms: int = 5 * 60_000
    #: > 0: publish deals and position events as columnar batch messages of at most this many
    #: rows (``platform.deals`` / ``platform.positions``); 0: one message per event.
    batch_rows: int = 0


@dataclass
class BridgeStats:
    """Counters for logs, metrics and tests."""

    connects: int = 0
    disconnects: int = 0
    published: int = 0
    caught_up: int = 0
    errors: list[str] = field(default_factory=list)


class Bridge:
    """Platform server → ``publish``, reconnecting forever until ``stop`` is set."""

    def __init__(
        self,
        server: str,
        port: PlatformPort,
        publish: Publisher,
        store: CheckpointStore,
        config: BridgeConfig | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.server = server
        self.port = port
        self.publish = publish
        self.store = store
        self.config = config or BridgeConfig()
        self.rng = rng or random.Random()
        self.stream = stream_name(server)
        self.stats = BridgeStats()
        self.checkpoint = store.load(server)
        self._events: queue.SimpleQueue[PlatformEvent] = queue.SimpleQueue()
        self.connected = threading.Event()

    # --- the loop ----------------------------------------------------------------------------

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, initial·2^attempt)]."""
        cap = min(self.config.backoff_max, self.config.backoff_initial * 2**attempt)
        return self.rng.uniform(0, cap)

    def run(self, stop: threading.Event) -> None:
        """Connect, catch up, forward; on any link failure back off and do it again."""
        self.port.subscribe(self._events.put)
        attempt = 0
        try:
            while not stop.is_set():
                try:
                    self.port.connect()
                except PlatformError as exc:
                    self._note(f"connect failed: {exc}")
                else:
                    self.stats.connects += 1
                    attempt = 0
                    try:
                        self._session(stop)
                    except PlatformError as exc:
                        self._note(f"session ended: {exc}")
                    except Exception as exc:  # the bus or the checkpoint's database failed:
                        # reconnect; catch-up re-publishes from the last saved checkpoint
                        self._note(f"publish failed: {type(exc).__name__}: {exc}")
                        close = getattr(self.store, "close", None)
                        if close is not None:
                            close()  # drop a broken database connection
                    finally:
                        self.connected.clear()
                        self.port.disconnect()
                        self.stats.disconnects += 1
                if stop.is_set():
                    break
                stop.wait(self.backoff(attempt))
                attempt += 1
        finally:
            self.port.unsubscribe(self._events.put)
            self.port.disconnect()
            close = getattr(self.store, "close", None)
            if close is not None:
                close()

    def _note(self, message: str) -> None:
        log.warning("bridge %s: %s", self.server, message)
        self.stats.errors.append(message)

    def _session(self, stop: threading.Event) -> None:
        self.connected.set()
        self.catch_up()
        resync_after_catch_up(self)  # hook: positions and accounts (trading.resync)
        while not stop.is_set():
            batch, lost = self._next_batch()
            if batch:
                self._publish_events(batch, source="live")
            if lost:
                return
            if not self.port.is_connected():
                return

    def _next_batch(self) -> tuple[list[PlatformEvent], bool]:
        """Up to ``batch_size`` events, waiting at most ``batch_wait``; True if the link dropped.

        Waits for the first event, then takes what is queued and sleeps ``poll_wait`` between
        takes rather than waking up for every single event (a firehose of tens of thousands a
        second would otherwise hand the interpreter back and forth once per event)."""
        cfg = self.config
        events = self._events
        batch: list[PlatformEvent] = []
        deadline = time.monotonic() + cfg.batch_wait
        try:
            batch.append(events.get(timeout=cfg.batch_wait))
        except queue.Empty:
            return batch, False
        lost = EventKind.CONNECTION_LOST
        while True:
            if batch[-1].kind is lost:
                batch.pop()
                return batch, True
            if len(batch) >= cfg.batch_size:
                return batch, False
            try:
                batch.append(events.get_nowait())
                continue
            except queue.Empty:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                return batch, False
            time.sleep(min(cfg.poll_wait, left))

    def catch_up(self) -> int:
        """Publish every deal above the checkpoint (minus the margin); returns how many."""
        cfg = self.config
        after = max(0, self.checkpoint.last_ticket - cfg.catchup_margin)
        since = (
            self.checkpoint.last_time_msc - cfg.catchup_overlap_ms
            if self.checkpoint.last_time_msc
            else None
        )
        total = 0
        first = True
        while True:
            deals = self.port.deals_since(after, limit=cfg.catchup_page, since_msc=since)
            if not first:
                # Platforms that search by time (MT4) may repeat the first page: only progress.
                deals = [d for d in deals if d.deal > after]
            if not deals:
                break
            self._publish_deals(deals)
            total += len(deals)
            after = max(after, max(d.deal for d in deals))
            first = False
            if len(deals) < cfg.catchup_page:
                break
        self.stats.caught_up += total
        return total

    # --- publishing --------------------------------------------------------------------------

    def _publish_deals(self, deals: list[Deal]) -> None:
        events = [PlatformEvent(EventKind.DEAL_ADD, d, d.time_msc) for d in deals]
        self._publish_events(events, source="catchup")

    def _publish_events(self, events: list[PlatformEvent], *, source: str) -> None:
        messages = (
            self._batch_messages(events, source)
            if self.config.batch_rows > 0
            else [self.to_message(e, source) for e in events]
        )
        self.publish(messages)
        self.stats.published += len(events)
        top: Deal | None = None
        for e in events:
            data = e.data
            if (
                e.kind is EventKind.DEAL_ADD
                and isinstance(data, Deal)
                and (top is None or data.deal > top.deal)
            ):
                top = data
        if top is not None and top.deal > self.checkpoint.last_ticket:
            self.checkpoint = Checkpoint(top.deal, max(top.time_msc, self.checkpoint.last_time_msc))
            self.store.save(self.server, self.checkpoint)

    def _batch_messages(self, events: list[PlatformEvent], source: str) -> list[Message]:
        """Deals and position events as columnar batches; any other event as its own message,
        after the batches of what came before it (stream order is kept around it)."""
        messages: list[Message] = []
        deals: list[tuple[Any, ...]] = []
        seen: set[int] = set()
        positions: list[list[Any]] = []
        deal_add, deal_values, position_values = EventKind.DEAL_ADD, _deal_values, _position_values
        for e in events:
            kind = e.kind
            if kind is deal_add:
                data = e.data
                ticket = data.deal  # type: ignore[union-attr]
                if ticket not in seen:  # the platform sent it twice: once is enough
                    seen.add(ticket)
                    v = deal_values(data)  # action, entry, reason: enums to plain integers
                    deals.append((*v[:3], int(v[3]), int(v[4]), int(v[5]), *v[6:]))
            elif kind in _POSITION_KINDS:
                row = list(position_values(e.data))
                row[3] = int(row[3])  # action
                row.append(_POSITION_KINDS[kind])
                positions.append(row)
            else:
                self._flush_batches(messages, deals, positions, source)
                deals = []
                positions = []
                messages.append(self.to_message(e, source))
        self._flush_batches(messages, deals, positions, source)
        return messages

    def _flush_batches(
        self,
        messages: list[Message],
        deals: list[tuple[Any, ...]],
        positions: list[list[Any]],
        source: str,
    ) -> None:
        size = self.config.batch_rows
        for i in range(0, len(deals), size):
            rows = deals[i : i + size]
            oldest = min(r[1] for r in rows)  # time_msc: the batch's lag is its oldest deal's
            messages.append(self._batch(DEALS_BATCH, DEAL_BATCH_COLUMNS, rows, oldest, source))
        for i in range(0, len(positions), size):
            chunk = positions[i : i + size]
            oldest = min(r[13] for r in chunk)  # time_update_msc
            messages.append(
                self._batch(POSITIONS_BATCH, POSITION_BATCH_COLUMNS, chunk, oldest, source)
            )

    def _batch(
        self,
        kind: str,
        columns: tuple[str, ...],
        rows: list[Any],
        occurred_msc: int,
        source: str,
    ) -> Message:
        return Message(
            event_id=str(new_id()),
            stream=self.stream,
            type=kind,
            payload={"server": self.server, "columns": list(columns), "rows": rows},
            occurred_at=datetime.fromtimestamp(occurred_msc / 1000, tz=UTC).isoformat(),
            headers={"server": self.server, "source": source, "items": str(len(rows))},
        )

    def to_message(self, event: PlatformEvent, source: str) -> Message:
        """A platform event as a bus message on this server's stream."""
        data = event.data
        payload = data.to_dict() if data is not None else {}  # a fresh dict: add to it
        payload["server"] = self.server
        if isinstance(data, Deal) and event.kind == EventKind.DEAL_ADD:
            event_id = deal_event_id(self.server, data.deal)
            occurred = data.time_msc
        else:
            event_id = str(new_id())
            occurred = event.received_msc
        login = getattr(data, "login", None)
        return Message(
            event_id=event_id,
            stream=self.stream,
            type=_MESSAGE_TYPES[event.kind],
            payload=payload,
            occurred_at=datetime.fromtimestamp(occurred / 1000, tz=UTC).isoformat(),
            aggregate_id=str(login) if login is not None else "",
            headers={"server": self.server, "source": source},
        )


def run_bridges(
    bridges: list[Bridge], stop: threading.Event, *, join_timeout: float = 10.0
) -> None:
    """Run several bridges (live, demo, …) on threads until ``stop`` is set."""
    threads = [
        threading.Thread(target=b.run, args=(stop,), name=f"bridge-{b.server}", daemon=True)
        for b in bridges
    ]
    for thread in threads:
        thread.start()
    try:
        while not stop.is_set():
            stop.wait(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(join_timeout)
