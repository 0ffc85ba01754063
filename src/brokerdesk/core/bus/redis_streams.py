"""Redis Streams bus: one Redis stream per bus stream, consumer groups, claiming, dead letters.

Keys are ``{prefix}:{stream}``; the dead-letter stream of each is ``{prefix}:{stream}:dead``.
``publish`` pipelines one XADD per message (optionally trimmed to an approximate MAXLEN).
``read`` first claims messages another consumer of the group left unacknowledged for longer
than ``claim_idle_ms`` (XAUTOCLAIM), moving any delivered more than ``max_deliveries`` times
to the dead-letter stream, then reads new ones (XREADGROUP ``>``). The claim scan resumes
where the previous one stopped and restarts from the beginning at most four times per idle
period. Groups are created on
first read, from the start of the stream.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from brokerdesk.core.bus.base import Delivery, Message, StreamDepth
from brokerdesk.core.bus.codec import decode, encode


class RedisStreamsBus:
    """The Redis Streams adapter."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "brokerdesk",
        maxlen: int | None = None,
        claim_idle_ms: int = 30_000,
        max_deliveries: int = 10,
        client: redis.Redis | None = None,
    ) -> None:
        self.client: redis.Redis = client or redis.Redis.from_url(url, decode_responses=True)
        self.prefix = prefix
        self.maxlen = maxlen
        self.claim_idle_ms = claim_idle_ms
        self.max_deliveries = max_deliveries
        self._groups: set[tuple[str, str]] = set()
        # per (stream, group): where the next XAUTOCLAIM scan starts, and when it is due
        self._claim_state: dict[tuple[str, str], tuple[str, float]] = {}
        self._claim_every_s = min(claim_idle_ms / 4, 1000) / 1000

    def key(self, stream: str) -> str:
        """The Redis key of a bus stream."""
        return f"{self.prefix}:{stream}"

    def dead_key(self, stream: str) -> str:
        """The Redis key of a stream's dead letters."""
        return f"{self.prefix}:{stream}:dead"

    def publish(self, messages: list[Message]) -> None:
        """XADD every message in one pipelined round trip."""
        if not messages:
            return
        pipe = self.client.pipeline(transaction=False)
        for m in messages:
            pipe.xadd(
                self.key(m.stream),
                {"event_id": m.event_id, "data": encode(m)},
                maxlen=self.maxlen,
                approximate=True,
            )
        pipe.execute()

    def _ensure_group(self, stream: str, group: str) -> None:
        if (stream, group) in self._groups:
            return
        try:
            self.client.xgroup_create(self.key(stream), group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add((stream, group))

    def read(
        self, stream: str, group: str, consumer: str, count: int, block_ms: int
    ) -> list[Delivery]:
        """Claimed stuck messages first, then new ones; blocks only when nothing was claimed."""
        self._ensure_group(stream, group)
        key = self.key(stream)
        deliveries = self._claim(stream, group, consumer, count)
        room = count - len(deliveries)
        if room > 0:
            block = block_ms if (block_ms > 0 and not deliveries) else None
            response: Any = self.client.xreadgroup(
                group, consumer, {key: ">"}, count=room, block=block
            )
            for _key, entries in response or []:
                for entry_id, fields in entries:
                    if fields:
                        deliveries.append(Delivery(decode(fields["data"]), entry_id, 1))
        return deliveries

    def _claim(self, stream: str, group: str, consumer: str, count: int) -> list[Delivery]:
        key = self.key(stream)
        start, due = self._claim_state.get((stream, group), ("0-0", 0.0))
        now = time.monotonic()
        if start == "0-0" and now < due:
            return []  # a full scan ran moments ago; scan again shortly
        result: Any = self.client.xautoclaim(
            key, group, consumer, min_idle_time=self.claim_idle_ms, start_id=start, count=count
        )
        self._claim_state[(stream, group)] = (str(result[0]), now + self._claim_every_s)
        entries = [(entry_id, fields) for entry_id, fields in result[1] if fields]
        if not entries:
            return []
        pipe = self.client.pipeline(transaction=False)
        for entry_id, _fields in entries:
            pipe.xpending_range(key, group, min=entry_id, max=entry_id, count=1)
        times = {
            p["message_id"]: int(p["times_delivered"]) for rows in pipe.execute() for p in rows
        }
        deliveries: list[Delivery] = []
        dead: list[tuple[str, dict[Any, Any], int]] = []
        for entry_id, fields in entries:
            attempts = times.get(entry_id, 2)
            if attempts > self.max_deliveries:
                dead.append((entry_id, fields, attempts))
            else:
                deliveries.append(Delivery(decode(fields["data"]), entry_id, attempts))
        if dead:
            pipe = self.client.pipeline(transaction=True)
            for entry_id, fields, attempts in dead:
                pipe.xadd(
                    self.dead_key(stream),
                    {**fields, "group": group, "entry_id": entry_id, "attempts": attempts},
                )
                pipe.xack(key, group, entry_id)
            pipe.execute()
        return deliveries

    def ack(self, stream: str, group: str, deliveries: list[Delivery]) -> None:
        """XACK the deliveries."""
        if deliveries:
            self.client.xack(self.key(stream), group, *[d.delivery_id for d in deliveries])

    def dead_letters(self, stream: str, count: int = 100) -> list[tuple[Message, dict[str, str]]]:
        """The oldest ``count`` entries of the stream's dead-letter stream."""
        entries: Any = self.client.xrange(self.dead_key(stream), count=count)
        return [(decode(fields["data"]), fields) for _entry_id, fields in entries]

    def depth(self, stream: str, group: str) -> StreamDepth:
        """Stream length, and the group's lag (undelivered) and pending counts."""
        key = self.key(stream)
        length = int(self.client.xlen(key))
        undelivered, pending = length, 0
        try:
            groups: Any = self.client.xinfo_groups(key)
        except redis.ResponseError:  # no such key
            groups = []
        for info in groups:
            if info["name"] == group:
                pending = int(info["pending"])
                lag = info.get("lag")
                undelivered = int(lag) if lag is not None else max(length - pending, 0)
        return StreamDepth(stream, group, length, undelivered, pending)

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()
