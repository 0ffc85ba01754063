"""``brokerdesk bridge --server NAME``: platform events onto the bus, one stream per server."""

from __future__ import annotations

import json
import signal
import sys
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from brokerdesk.core.bus.base import Message
from brokerdesk.core.runtime import tune_gc
from brokerdesk.trading.bridge import (
    Bridge,
    BridgeConfig,
    DbCheckpointStore,
    Publisher,
    run_bridges,
)
from brokerdesk.trading.config import build_adapter, platform_servers


def stdout_publisher(messages: list[Message]) -> None:
    """Write each message as one JSON line (debugging, piping)."""
    for m in messages:
        sys.stdout.write(
            json.dumps(
                {
                    "event_id": m.event_id,
                    "stream": m.stream,
                    "type": m.type,
                    "occurred_at": m.occurred_at,
                    "payload": m.payload,
                    "headers": m.headers,
                }
            )
            + "\n"
        )
    sys.stdout.flush()


BRIDGE_PACK = 500  # messages per Redis stream entry


def bus_publisher(pack: int = BRIDGE_PACK) -> Publisher:
    """The configured bus's ``publish`` (``settings.BUS_URL``), ``pack`` messages per stream
    entry on Redis (a firehose: fewer entries, round trips and parses downstream)."""
    return bus_publishing(pack)[0]


def bus_publishing(pack: int = BRIDGE_PACK) -> tuple[Publisher, int]:
    """``bus_publisher`` and the bridge's ``batch_rows`` for it: on Redis Streams with packing,
    deals and position events go as columnar batches of ``pack`` rows (the reader sizes its
    reads by rows); elsewhere one message per event."""
    from brokerdesk.core.bus.factory import get_bus
    from brokerdesk.core.bus.redis_streams import RedisStreamsBus

    bus = get_bus(pack=pack)
    return bus.publish, (pack if isinstance(bus, RedisStreamsBus) and pack > 1 else 0)


class Command(BaseCommand):
    """Run one bridge per ``--server`` until SIGTERM/SIGINT."""

    help = "Bridge platform servers (deals, positions, users) to the event bus."

    def add_arguments(self, parser: CommandParser) -> None:
        """Options."""
        parser.add_argument(
            "--server",
            action="append",
            required=True,
            help="configured platform server name (repeat for several: live, demo)",
        )
        parser.add_argument("--publisher", choices=["bus", "stdout"], default="bus")
        parser.add_argument("--batch-size", type=int, default=2000)
        parser.add_argument(
            "--pack",
            type=int,
            default=BRIDGE_PACK,
            help="messages per Redis stream entry (1: one each)",
        )
        parser.add_argument("--backoff-max", type=float, default=30.0)

    def handle(self, *args: Any, **opts: Any) -> None:
        """Run."""
        tune_gc()
        servers = platform_servers()
        unknown = [name for name in opts["server"] if name not in servers]
        if unknown:
            raise CommandError(
                f"unknown platform server(s) {', '.join(unknown)}; configured: {', '.join(servers)}"
            )
        publish, batch_rows = (
            (stdout_publisher, 0) if opts["publisher"] == "stdout" else bus_publishing(opts["pack"])
        )
        config = BridgeConfig(
            batch_size=opts["batch_size"], backoff_max=opts["backoff_max"], batch_rows=batch_rows
        )
        store = DbCheckpointStore()
        bridges = [
            Bridge(name, build_adapter(servers[name]), publish, store, config)
            for name in opts["server"]
        ]
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        run_bridges(bridges, stop)
