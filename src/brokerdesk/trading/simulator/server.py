"""The simulator's network face: asyncio TCP, newline-delimited JSON.

Requests ``{"id": 1, "method": "dealer_balance", "params": {...}}`` get
``{"id": 1, "result": ...}`` or ``{"id": 1, "error": {"retcode": 10019, "message": "..."}}``.
After ``subscribe`` the server pushes ``{"event": "deal.add", "data": {...}}`` lines. Field
names and units are MT5's (see :mod:`.engine`).

Fault modes (``--faults`` or the ``faults`` method at run time) act on every connection:

* ``drop_after=N``: abort a subscribed connection after it was sent N more events;
* ``drop=P``: abort after any event with probability P;
* ``duplicate=P``: send an event twice;
* ``reorder=P``: hold an event back behind the next 1-4 events, or until the stream goes
  quiet (a flush with nothing else to send), so a held event is late but never lost;
* ``delay_ms=N``: answer write requests N ms late;
* ``lose=P`` / ``lose_next=N``: apply a write but never answer it (the caller must find its
  deal by comment).

Operator commands (a dealer at the server, not the manager API the CRM uses): ``deal_update``
``{"ticket": N, "Profit": 12.5, "Comment": "…"}`` and ``deal_delete`` ``{"ticket": N}`` push
``deal.update`` / ``deal.delete`` events (MT5 ``IMTDealSink::OnDealUpdate`` / ``OnDealDelete``)
and fix the user's balance to the corrected history. Events other than ``deal.add`` carry the
server's ``time_msc`` next to ``data``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO, Any

import orjson

from brokerdesk.trading.platform.port import DealAction
from brokerdesk.trading.simulator.engine import Engine, EngineError

log = logging.getLogger(__name__)

WRITE_METHODS = frozenset({"dealer_balance", "user_add", "user_update"})


@dataclass
class Faults:
    """Switchable fault modes."""

    drop_after: int = 0
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    delay_ms: int = 0
    lose: float = 0.0
    lose_next: int = 0

    @classmethod
    def parse(cls, spec: str) -> Faults:
        """``"duplicate=0.05,reorder=0.05,drop_after=500"`` → Faults."""
        faults = cls()
        faults.update(
            dict(item.split("=", 1) for item in filter(None, (p.strip() for p in spec.split(","))))
        )
        return faults

    def update(self, values: dict[str, Any]) -> None:
        """Set the named modes (unknown names are an error)."""
        types = {f.name: f.type for f in fields(self)}
        for key, value in values.items():
            if key not in types:
                raise ValueError(f"unknown fault mode {key!r}")
            setattr(self, key, int(value) if types[key] in ("int", int) else float(value))

    def as_dict(self) -> dict[str, Any]:
        """The current modes."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Connection:
    """One client connection: its request loop and its outgoing event buffer."""

    def __init__(
        self, server: SimulatorServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.subscribed: set[str] = set()
        self.events_sent = 0
        self.held: list[list[Any]] = []  # [events still to wait, line]
        self.buffer: list[bytes] = []
        self.closed = False
        self.drop_at = 0

    def push(self, kind: str, line: bytes) -> None:
        """Queue one encoded event line, applying the event fault modes."""
        if self.closed or kind.partition(".")[0] not in self.subscribed:
            return
        faults = self.server.faults
        rng = self.server.engine.rng
        released: list[bytes] = []
        if self.held:
            for item in self.held:
                item[0] -= 1
            released = [one for n, one in self.held if n <= 0]
            self.held = [item for item in self.held if item[0] > 0]
        lines = [line]
        if faults.duplicate and rng.random() < faults.duplicate:
            lines.append(line)
        if faults.reorder and rng.random() < faults.reorder:
            # Hold it back behind the next 1-4 events.
            self.held.append([rng.randint(1, 4), lines.pop(0)])
        lines.extend(released)
        for one in lines:
            self.buffer.append(one)
            self.events_sent += 1
            if (self.drop_at and self.events_sent >= self.drop_at) or (
                faults.drop and rng.random() < faults.drop
            ):
                self.abort()
                return

    def flush(self) -> None:
        """Write what was queued; held-back events too when nothing else is (or the reorder
        fault is off): a real server reorders within a burst, it does not keep an event until
        the next trade, which may never come."""
        if self.closed:
            return
        if self.held and (not self.buffer or not self.server.faults.reorder):
            self.buffer.extend(one for _, one in self.held)
            self.held = []
        if not self.buffer:
            return
        data = b"".join(self.buffer)
        self.buffer.clear()
        self.writer.write(data)

    def send(self, message: dict[str, Any]) -> None:
        """Write one reply line (after any queued events, to keep the stream ordered)."""
        if self.closed:
            return
        self.flush()
        self.writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    def abort(self) -> None:
        """Drop the connection hard (fault mode)."""
        if self.closed:
            return
        self.closed = True
        # What was queued before the drop still goes out, like bytes already on the wire.
        if self.buffer:
            with contextlib.suppress(Exception):
                self.writer.write(b"".join(self.buffer))
        self.buffer.clear()
        transport = self.writer.transport
        loop = asyncio.get_running_loop()
        loop.call_soon(transport.abort)

    async def run(self) -> None:
        """Serve requests until the client goes away."""
        try:
            while not self.closed:
                raw = await self.reader.readline()
                if not raw:
                    break
                try:
                    request = json.loads(raw)
                except json.JSONDecodeError:
                    self.send({"id": None, "error": {"retcode": 3, "message": "bad json"}})
                    continue
                await self.handle(request)
                if not self.closed:
                    await self.writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self.closed = True
            self.server.connections.discard(self)
            self.server.update_interest()
            with contextlib.suppress(Exception):
                self.writer.close()

    async def handle(self, request: dict[str, Any]) -> None:
        """Run one request and answer it (or not, under the lose fault)."""
        rid = request.get("id")
        method = str(request.get("method", ""))
        params = request.get("params") or {}
        server = self.server
        try:
            result = server.dispatch(self, method, params)
        except EngineError as exc:
            self.send({"id": rid, "error": {"retcode": exc.retcode, "message": exc.message}})
            server.flush_all()
            return
        except (KeyError, TypeError, ValueError) as exc:
            self.send({"id": rid, "error": {"retcode": 3, "message": f"bad params: {exc}"}})
            return
        server.flush_all()
        faults = server.faults
        if method in WRITE_METHODS:
            if faults.lose_next > 0:
                faults.lose_next -= 1
                return
            if faults.lose and server.engine.rng.random() < faults.lose:
                return
            if faults.delay_ms:
                await asyncio.sleep(faults.delay_ms / 1000)
        self.send({"id": rid, "result": result})


class SimulatorServer:
    """The simulated MT5 trade server process."""

    def __init__(
        self,
        engine: Engine,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rate: float = 0.0,
        faults: Faults | None = None,
        manager_password: str = "",
        tick_seconds: float = 0.1,
        rollover_seconds: float = 60.0,
    ) -> None:
        self.engine = engine
        self.host = host
        self.port = port
        self.rate = rate
        self.faults = faults or Faults()
        self.manager_password = manager_password
        self.tick_seconds = tick_seconds
        self.rollover_seconds = rollover_seconds
        self.connections: set[Connection] = set()
        #: Event families some connection subscribed to (``update_interest``).
        self.interest: set[str] = set()
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        engine.listeners.append(self._on_event)

    def _on_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind.partition(".")[0] not in self.interest:
            return
        if kind == "deal.add":
            line = b'{"event":"deal.add","data":' + self.engine.deal_json.encode() + b"}\n"
        else:
            # The server's time of the change travels with the event (not an MT5 field): it
            # orders dealer corrections of one deal even when the reorder fault swaps them.
            stamp = (
                self.engine.correction_msc
                if kind in ("deal.update", "deal.delete")
                else self.engine.now_msc()
            )
            # orjson: a position event comes with nearly every deal (same text as json.dumps)
            line = orjson.dumps({"event": kind, "data": data, "time_msc": stamp}) + b"\n"
        for conn in list(self.connections):
            conn.push(kind, line)

    def update_interest(self) -> None:
        """Note which event families have a subscriber (after a subscribe or a disconnect), and
        tell the engine whether position events do."""
        self.interest = set().union(*(c.subscribed for c in self.connections if not c.closed))
        self.engine.want_positions = "position" in self.interest

    def flush_all(self) -> None:
        """Write every connection's queued events."""
        for conn in list(self.connections):
            conn.flush()
        if self.engine.deal_log is not None:
            self.engine.deal_log.flush()

    async def start(self) -> int:
        """Listen; returns the bound port."""
        self._server = await asyncio.start_server(self._accept, self.host, self.port, limit=2**24)
        self.port = self._server.sockets[0].getsockname()[1]
        self._tasks.append(asyncio.create_task(self._feed()))
        return self.port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Backpressure on a slow subscriber: wait when 8 MiB are queued, resume below 2 MiB.
        writer.transport.set_write_buffer_limits(high=2**23, low=2**21)
        conn = Connection(self, reader, writer)
        self.connections.add(conn)
        await conn.run()

    async def _feed(self) -> None:
        """Price ticks, swaps, stop-outs and the simulated clients' deals at ``rate`` per second."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        next_tick = last
        next_rollover = last + self.rollover_seconds
        owed = 0.0
        while True:
            await asyncio.sleep(0.01)
            now = loop.time()
            if self.tick_seconds > 0 and now >= next_tick:
                self.engine.tick()
                self.engine.check_stop_outs()
                next_tick = now + self.tick_seconds
            if self.rollover_seconds and now >= next_rollover:
                self.engine.rollover()
                next_rollover = now + self.rollover_seconds
            if self.rate > 0:
                # At most 50 ms of work per turn, and no debt older than a second: a server
                # that cannot keep up produces less, it never starves its own connections.
                owed = min(owed + (now - last) * self.rate, self.rate)
                budget_end = loop.time() + 0.05
                while owed >= 1 and loop.time() < budget_end:
                    owed -= self.engine.random_activity(int(min(owed, 500)))
                    self.flush_all()
                owed = max(owed, 0.0)
            last = now
            self.flush_all()
            # Let slow subscribers drain: backpressure, not unbounded buffers.
            for conn in list(self.connections):
                if not conn.closed and conn.writer.transport.get_write_buffer_size() > 2**23:
                    with contextlib.suppress(ConnectionError):
                        await conn.writer.drain()

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.closed = True
            conn.writer.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()
        if self.engine.deal_log is not None:
            self.engine.deal_log.flush()

    # --- methods ---------------------------------------------------------------------------

    def dispatch(self, conn: Connection, method: str, p: dict[str, Any]) -> Any:
        """Run one protocol method against the engine."""
        e = self.engine
        if method == "hello":
            if self.manager_password and p.get("password") != self.manager_password:
                raise EngineError(1001, "invalid manager account")
            return {"server": e.name, "last_ticket": e.last_ticket, "time_msc": e.now_msc()}
        if method == "ping":
            return {"time_msc": e.now_msc()}
        if method == "subscribe":
            conn.subscribed.update(p.get("kinds") or ["deal", "position", "user", "account"])
            self.update_interest()
            if self.faults.drop_after:
                conn.drop_at = conn.events_sent + self.faults.drop_after
            return {"subscribed": sorted(conn.subscribed), "last_ticket": e.last_ticket}
        if method == "user_add":
            return e.user_add(
                p["Group"],
                int(p["Leverage"]),
                p.get("Name", ""),
                login=int(p.get("Login", 0)),
                email=p.get("EMail", ""),
                comment=p.get("Comment", ""),
                **({"rights": int(p["Rights"])} if "Rights" in p else {}),
            )
        if method == "user_get":
            return e.user_get(int(p["login"]))
        if method == "user_update":
            login = int(p.pop("Login"))
            return e.user_update(login, **p)
        if method == "dealer_balance":
            login = int(p["login"])
            user = e.users.get(login)
            digits = e.groups[user.group].currency_digits if user else 2
            # The platform takes a float in major units; the server rounds it to its cents.
            amount = round(float(p["value"]) * 10**digits)
            deal = e.dealer_balance(login, amount, int(p["type"]), str(p.get("comment", "")))
            return {"ticket": deal["Deal"]}
        if method == "account_get":
            return e.account(int(p["login"]))
        if method == "deal_request":
            return {"deals": e.deals_of(int(p["login"]), int(p["from"]), int(p["to"]))}
        if method == "deal_request_since":
            return {"deals": e.deals_since(int(p["after"]), int(p.get("limit", 10_000)))}
        if method == "deal_request_by_time":
            return {"deals": e.deals_by_time(int(p["from"]), int(p["to"]))}
        if method == "position_request":
            return {"positions": e.positions_of(int(p["login"]))}
        if method == "position_request_all":
            return {"positions": e.all_positions(), "time_msc": e.now_msc()}
        if method == "account_request_by_logins":
            return {"accounts": e.accounts_of([int(x) for x in p.get("logins") or []])}
        if method == "deal_update":  # operator: a dealer corrects a deal (MT5 DealUpdate)
            ticket = int(p.pop("ticket"))
            return e.deal_update(ticket, **p)
        if method == "deal_delete":  # operator: a dealer deletes a deal (MT5 DealDelete)
            return e.deal_delete(int(p["ticket"]))
        if method == "trade_open":
            return e.open_position(int(p["login"]), p["symbol"], int(p["action"]), int(p["volume"]))
        if method == "trade_close":
            vol = p.get("volume")
            return e.close_position(int(p["position"]), None if vol is None else int(vol))
        if method == "set_price":
            e.set_price(p["symbol"], float(p["bid"]))
            stopped = [
                d["Deal"] for login in list(e.positions_by_login) for d in e.check_stop_out(login)
            ]
            return {"stopped_out": stopped}
        if method == "rollover":
            e.rollover()
            return {"ok": True}
        if method == "activity":
            return {"deals": e.random_activity(int(p["deals"]))}
        if method == "faults":
            self.faults.update(p)
            if "drop_after" in p:
                for other in self.connections:
                    other.drop_at = (
                        other.events_sent + self.faults.drop_after
                        if other.subscribed and self.faults.drop_after
                        else 0
                    )
            return self.faults.as_dict()
        if method == "set_rate":
            self.rate = float(p["rate"])
            if "tick_seconds" in p:  # 0 stops the price feed (and with it stop-outs)
                self.tick_seconds = float(p["tick_seconds"])
            return {"rate": self.rate, "tick_seconds": self.tick_seconds}
        if method == "stats":
            return {
                "last_ticket": e.last_ticket,
                "deals": e.deal_count,
                "users": len(e.users),
                "positions": len(e.positions),
                "rate": self.rate,
            }
        raise EngineError(3, f"unknown method {method!r}")


def run_simulator(
    *,
    host: str,
    port: int,
    rate: float,
    faults: Faults,
    traders: int,
    seed: int | None,
    deal_log_path: Path | None,
    name: str = "sim",
    manager_password: str = "",
    ready: Any = None,
    duration: float = 0.0,
    tick_seconds: float = 0.1,
) -> None:
    """Run the simulator until interrupted (or for ``duration`` seconds)."""

    async def main() -> None:
        log_file: IO[str] | None = None
        if deal_log_path is not None:
            deal_log_path.parent.mkdir(parents=True, exist_ok=True)
            log_file = deal_log_path.open("a", encoding="utf-8", buffering=1 << 20)
        engine = Engine(name=name, seed=seed, deal_log=log_file)
        engine.add_traders(traders)
        server = SimulatorServer(
            engine,
            host=host,
            port=port,
            rate=rate,
            faults=faults,
            manager_password=manager_password,
            tick_seconds=tick_seconds,
        )
        bound = await server.start()
        if log_file is not None:
            log_file.flush()
        if ready is not None:
            ready(bound)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=duration or None)
        finally:
            await server.stop()
            if log_file is not None:
                log_file.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


__all__ = ["DealAction", "Faults", "SimulatorServer", "run_simulator"]
