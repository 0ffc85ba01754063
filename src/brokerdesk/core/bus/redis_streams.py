"""Redis Streams bus: one Redis stream per bus stream, consumer groups, claiming, dead letters.

Keys are ``{prefix}:{stream}``; the dead-letter stream of each is ``{prefix}:{stream}:dead``.
``publish`` pipelines one XADD per message (optionally trimmed to an approximate MAXLEN).
With ``pack=N`` (N > 1) it writes up to N consecutive items of a stream as ONE entry
(fields ``n`` and ``pack``, :func:`~brokerdesk.core.bus.codec.encode_many`): far fewer
entries, round trips and parses for a firehose such as the bridge's. An item is a message,
or ``headers["items"]`` of them for a batch message (the bridge's columnar deal batches):
``n`` counts items. Readers unpack any entry, packed or not, into one delivery per message;
the messages of an entry share its delivery id, so they are acknowledged, claimed and
dead-lettered together. A reader asks for ``count // n`` entries, ``n`` being the largest
pack seen on the stream (the newest entries are peeked once per stream), so a read still
returns about ``count`` items at most. Stream
``depth`` counts entries.

``read`` first claims messages another consumer of the group left unacknowledged for longer
than ``claim_idle_ms`` (XAUTOCLAIM), moving any delivered more than ``max_deliveries`` times
to the dead-letter stream, then reads new ones (XREADGROUP ``>``). The claim scan resumes
where the previous one stopped and restarts from the beginning at most four times per idle
period. Groups are created on first read, from the start of the stream.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from brokerdesk.core.bus.base import Delivery, Message, StreamDepth
from brokerdesk.core.bus.codec import decode, decode_many, encode, encode_many


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
        pack: int = 1,
        client: redis.Redis | None = None,
    ) -> None:
        self.client: redis.Redis = client or redis.Redis.from_url(url, decode_responses=True)
        self.prefix = prefix
        self.maxlen = maxlen
        self.claim_idle_ms = claim_idle_ms
        self.max_deliveries = max_deliveries
        self.pack = max(1, pack)
        # per stream: the largest number of messages seen in one entry (see ``read``)
        self._pack_seen: dict[str, int] = {}
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
        """XADD every message (or every pack of ``pack`` messages) in one pipelined round trip."""
        if not messages:
            return
        pipe = self.client.pipeline(transaction=False)
        if self.pack == 1:
            for m in messages:
                pipe.xadd(
                    self.key(m.stream),
                    {"event_id": m.event_id, "data": encode(m)},
                    maxlen=self.maxlen,
                    approximate=True,
                )
        else:
            by_stream: dict[str, list[Message]] = {}
            for m in messages:
                by_stream.setdefault(m.stream, []).append(m)
            for stream, group in by_stream.items():
                for chunk, items in self._chunks(group):
                    fields: dict[Any, Any] = (
                        {"event_id": chunk[0].event_id, "data": encode(chunk[0])}
                        if len(chunk) == 1 and items == 1
                        else {"n": items, "pack": encode_many(chunk)}
                    )
                    pipe.xadd(self.key(stream), fields, maxlen=self.maxlen, approximate=True)
        pipe.execute()

    def _chunks(self, messages: list[Message]) -> list[tuple[list[Message], int]]:
        """Consecutive messages grouped up to ``pack`` items per entry, with their item count:
        a message counts as its ``items`` header (a batch message carrying many rows) or 1."""
        chunks: list[tuple[list[Message], int]] = []
        chunk: list[Message] = []
        items = 0
        for m in messages:
            weight = _items(m)
            if chunk and items + weight > self.pack:
                chunks.append((chunk, items))
                chunk, items = [], 0
            chunk.append(m)
            items += weight
        if chunk:
            chunks.append((chunk, items))
        return chunks

    @staticmethod
    def _unpack(fields: dict[Any, Any]) -> list[Message]:
        """The messages of one entry (packed or single)."""
        if "pack" in fields:
            return decode_many(fields["pack"])
        return [decode(fields["data"])]

    def _entries_for(self, stream: str, count: int) -> int:
        """How many entries to ask for so that about ``count`` messages come back."""
        seen = self._pack_seen.get(stream)
        if seen is None:
            newest: Any = self.client.xrevrange(self.key(stream), count=10)
            seen = max((int(f.get("n", 1)) for _id, f in newest), default=1)
            if newest:  # an empty stream tells nothing yet: peek again next time
                self._pack_seen[stream] = seen
        return max(1, count // seen)

    def _note_pack(self, stream: str, fields: dict[Any, Any]) -> None:
        n = int(fields.get("n", 1))
        if n > self._pack_seen.get(stream, 1):
            self._pack_seen[stream] = n

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
        room = count - sum(_items(d.message) for d in deliveries)
        if room > 0:
            block = block_ms if (block_ms > 0 and not deliveries) else None
            response: Any = self.client.xreadgroup(
                group, consumer, {key: ">"}, count=self._entries_for(stream, room), block=block
            )
            for _key, entries in response or []:
                for entry_id, fields in entries:
                    if fields:
                        self._note_pack(stream, fields)
                        deliveries.extend(Delivery(m, entry_id, 1) for m in self._unpack(fields))
        return deliveries

    def _claim(self, stream: str, group: str, consumer: str, count: int) -> list[Delivery]:
        key = self.key(stream)
        start, due = self._claim_state.get((stream, group), ("0-0", 0.0))
        now = time.monotonic()
        if start == "0-0" and now < due:
            return []  # a full scan ran moments ago; scan again shortly
        result: Any = self.client.xautoclaim(
            key,
            group,
            consumer,
            min_idle_time=self.claim_idle_ms,
            start_id=start,
            count=self._entries_for(stream, count),
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
                self._note_pack(stream, fields)
                deliveries.extend(Delivery(m, entry_id, attempts) for m in self._unpack(fields))
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
            ids = dict.fromkeys(d.delivery_id for d in deliveries)  # a pack's messages share one
            self.client.xack(self.key(stream), group, *ids)

    def dead_letters(self, stream: str, count: int = 100) -> list[tuple[Message, dict[str, str]]]:
        """The oldest ``count`` entries of the stream's dead-letter stream."""
        entries: Any = self.client.xrange(self.dead_key(stream), count=count)
        return [
            (message, fields) for _entry_id, fields in entries for message in self._unpack(fields)
        ]

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


def _items(message: Message) -> int:
    """How many items a message carries (``headers["items"]`` of a batch message, else 1)."""
    return int(message.headers.get("items", 1)) if message.headers else 1
