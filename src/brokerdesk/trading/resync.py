"""After a reconnect: what the bridge cannot catch up from the deal history.

The bridge re-reads the deals it missed (every ticket above its checkpoint). Position and
account changes have no such history: a position opened and closed during the outage, or an
account's margin moving, left nothing to re-read. So after the deal catch-up the bridge calls
:func:`resync_after_catch_up`, which publishes, on the server's stream and before any live event
of the new session:

* ``platform.snapshot.positions``: every open position on the server (MT5
  ``PositionRequestByGroup``); the consumer (:mod:`brokerdesk.trading.corrections`) closes the
  stored open positions missing from it and adds the new ones;
* ``platform.account.update`` per login it tracks (MT5 ``UserAccountRequestByLogins``): balance,
  credit, equity and margin; the consumer keeps the newest margin figures.

Tracked logins: the logins with open positions, ``bridge.tracked_logins`` if set, and — for a
bridge that keeps its checkpoint in the database — the server's trading accounts. A port without
these requests (a test double) is skipped; a failed request other than a lost connection is
logged and does not stop live forwarding.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from brokerdesk.core.bus.base import Message
from brokerdesk.core.ids import new_id
from brokerdesk.trading.corrections import POSITIONS_SNAPSHOT, now_msc
from brokerdesk.trading.platform.port import (
    EventKind,
    PlatformConnectionError,
    PlatformError,
    PlatformEvent,
    Position,
)

if TYPE_CHECKING:
    from brokerdesk.trading.bridge import Bridge

log = logging.getLogger(__name__)

ACCOUNT_BATCH = 500  # logins per UserAccountRequestByLogins


@dataclass
class ResyncResult:
    """What one resynchronisation published."""

    positions: int = 0
    accounts: int = 0
    skipped: bool = False


def positions_snapshot_message(
    bridge: Bridge, positions: list[Position], taken_msc: int, server_time_msc: int | None = None
) -> Message:
    """One message with every open position of the bridge's server. ``server_time_msc``: the
    server's clock just before the request (positions created after it are left open)."""
    return Message(
        event_id=str(new_id()),
        stream=bridge.stream,
        type=POSITIONS_SNAPSHOT,
        payload={
            "server": bridge.server,
            "taken_msc": taken_msc,
            "server_time_msc": server_time_msc,
            "positions": [p.to_dict() for p in positions],
        },
        occurred_at=datetime.fromtimestamp(taken_msc / 1000, tz=UTC).isoformat(),
        aggregate_id="",
        headers={"server": bridge.server, "source": "resync"},
    )


def tracked_logins(bridge: Bridge) -> set[int]:
    """The logins whose accounts the bridge re-reads (see the module's docstring)."""
    logins = {int(x) for x in getattr(bridge, "tracked_logins", None) or ()}
    if getattr(bridge.store, "close", None) is not None:  # a database-backed bridge
        try:
            from brokerdesk.trading.models import TradingAccount

            logins |= set(
                TradingAccount.objects.filter(server=bridge.server).values_list("login", flat=True)
            )
        except Exception as exc:  # the database is down: the positions' logins still resync
            log.warning("resync %s: trading accounts not read: %s", bridge.server, exc)
    return logins


def resync_after_catch_up(bridge: Bridge) -> ResyncResult:
    """Publish the open-positions snapshot and the tracked accounts' states."""
    result = ResyncResult()
    port = bridge.port
    open_positions = getattr(port, "open_positions", None)
    account_states = getattr(port, "account_states", None)
    if not getattr(bridge, "resync_enabled", True) or open_positions is None:
        result.skipped = True
        return result
    try:
        server_time = getattr(port, "server_time_msc", None)
        server_before = server_time() if server_time is not None else None
        taken = now_msc()
        positions: list[Position] = open_positions()
        bridge.publish([positions_snapshot_message(bridge, positions, taken, server_before)])
        result.positions = len(positions)
        logins = sorted(tracked_logins(bridge) | {p.login for p in positions})
        if account_states is not None:
            for i in range(0, len(logins), ACCOUNT_BATCH):
                states = account_states(logins[i : i + ACCOUNT_BATCH])
                now = now_msc()
                messages = [
                    bridge.to_message(PlatformEvent(EventKind.ACCOUNT_UPDATE, s, now), "resync")
                    for s in states
                ]
                if messages:
                    bridge.publish(messages)
                result.accounts += len(messages)
    except PlatformConnectionError:
        raise  # the session is over: reconnect, catch up and resync again
    except PlatformError as exc:
        log.warning("resync %s failed: %s", bridge.server, exc)
        bridge.stats.errors.append(f"resync failed: {exc}")
    return result
