"""NATS JetStream bus, behind a small synchronous facade.

nats-py is asyncio; the rest of Brokerdesk is synchronous. The adapter runs its own event
loop in a daemon thread and submits coroutines to it, so any thread may call it.

Each bus stream is a JetStream stream ``{prefix}_{stream}`` capturing the subject
``{prefix}.{stream}``, created on first use. ``publish`` sets ``Nats-Msg-Id`` to the event id,
so the server drops a re-publication inside its duplicate window. A consumer group is a
durable pull consumer named after the group (explicit ack, redelivery after
``claim_idle_ms``). A message delivered more than ``max_deliveries`` times is copied to the
dead-letter stream ``{prefix}_{stream}_dead`` and terminated.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig
from nats.js.errors import NotFoundError

from brokerdesk.core.bus.base import Delivery, Message, StreamDepth
from brokerdesk.core.bus.codec import decode, encode

T = TypeVar("T")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
DUPLICATE_WINDOW_S = 120.0


def _token(value: str) -> str:
    return _UNSAFE.sub("_", value)


class _LoopThread:
    """An asyncio event loop running in its own daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="nats-bus", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            self.loop.close()


class NatsJetStreamBus:
    """The NATS JetStream adapter (synchronous facade)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "brokerdesk",
        claim_idle_ms: int = 30_000,
        max_deliveries: int = 10,
        max_msgs: int | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.url = url
        self.prefix = _token(prefix)
        self.claim_idle_ms = claim_idle_ms
        self.max_deliveries = max_deliveries
        self.max_msgs = max_msgs
        self.timeout_s = timeout_s
        self._loop = _LoopThread()
        self._nc: Client = self._run(nats.connect(url, name="brokerdesk"))
        self._js: JetStreamContext = self._nc.jetstream()
        self._streams: set[str] = set()
        self._subs: dict[tuple[str, str], JetStreamContext.PullSubscription] = {}
        self._inflight: dict[tuple[str, str, str], Msg] = {}
        self._lock = threading.Lock()

    def _run(self, coro: Coroutine[Any, Any, T], extra_s: float = 0.0) -> T:
        return self._loop.run(coro, self.timeout_s + extra_s)

    def stream_name(self, stream: str) -> str:
        """The JetStream stream holding a bus stream."""
        return f"{self.prefix}_{_token(stream)}"

    def subject(self, stream: str) -> str:
        """The subject a bus stream is published on."""
        return f"{self.prefix}.{stream}"

    def dead_subject(self, stream: str) -> str:
        """The subject of a stream's dead letters."""
        return f"{self.prefix}-dead.{stream}"

    async def _ensure_stream(self, name: str, subject: str) -> None:
        if name in self._streams:
            return
        try:
            await self._js.stream_info(name)
        except NotFoundError:
            await self._js.add_stream(
                StreamConfig(
                    name=name,
                    subjects=[subject],
                    duplicate_window=DUPLICATE_WINDOW_S,
                    max_msgs=self.max_msgs or -1,
                )
            )
        self._streams.add(name)

    def publish(self, messages: list[Message]) -> None:
        """Publish concurrently and wait for every server acknowledgement."""
        if messages:
            self._run(self._publish(messages), extra_s=len(messages) / 100)

    async def _publish(self, messages: list[Message]) -> None:
        for stream in {m.stream for m in messages}:
            await self._ensure_stream(self.stream_name(stream), self.subject(stream))
        await asyncio.gather(
            *(
                self._js.publish(
                    self.subject(m.stream),
                    encode(m),
                    stream=self.stream_name(m.stream),
                    headers={"Nats-Msg-Id": m.event_id},
                )
                for m in messages
            )
        )

    async def _subscription(self, stream: str, group: str) -> JetStreamContext.PullSubscription:
        key = (stream, group)
        sub = self._subs.get(key)
        if sub is None:
            name = self.stream_name(stream)
            await self._ensure_stream(name, self.subject(stream))
            sub = await self._js.pull_subscribe(
                self.subject(stream),
                durable=_token(group),
                stream=name,
                config=ConsumerConfig(
                    ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.ALL,
                    ack_wait=self.claim_idle_ms / 1000,
                    max_deliver=-1,
                ),
            )
            self._subs[key] = sub
        return sub

    def read(
        self, stream: str, group: str, consumer: str, count: int, block_ms: int
    ) -> list[Delivery]:
        """Fetch up to ``count`` messages from the group's durable pull consumer."""
        timeout = max(block_ms, 20) / 1000
        msgs = self._run(self._fetch(stream, group, count, timeout), extra_s=timeout)
        deliveries: list[Delivery] = []
        dead: list[tuple[Msg, int]] = []
        for msg in msgs:
            meta = msg.metadata
            delivery_id = str(meta.sequence.stream)
            if meta.num_delivered > self.max_deliveries:
                dead.append((msg, meta.num_delivered))
                continue
            with self._lock:
                self._inflight[(stream, group, delivery_id)] = msg
            deliveries.append(Delivery(decode(msg.data), delivery_id, meta.num_delivered))
        if dead:
            self._run(self._dead_letter(stream, group, dead))
        return deliveries

    async def _fetch(self, stream: str, group: str, count: int, timeout: float) -> list[Msg]:
        sub = await self._subscription(stream, group)
        try:
            return await sub.fetch(batch=count, timeout=timeout)
        except (TimeoutError, NatsTimeoutError):
            return []

    async def _dead_letter(self, stream: str, group: str, dead: list[tuple[Msg, int]]) -> None:
        name = f"{self.stream_name(stream)}_dead"
        await self._ensure_stream(name, self.dead_subject(stream))
        for msg, attempts in dead:
            await self._js.publish(
                self.dead_subject(stream),
                msg.data,
                stream=name,
                headers={"group": group, "attempts": str(attempts)},
            )
            await msg.term()

    def ack(self, stream: str, group: str, deliveries: list[Delivery]) -> None:
        """Acknowledge each delivery and wait for the server to confirm."""
        with self._lock:
            msgs = [
                m
                for d in deliveries
                if (m := self._inflight.pop((stream, group, d.delivery_id), None)) is not None
            ]
        if msgs:
            self._run(self._ack(msgs))

    @staticmethod
    async def _ack(msgs: list[Msg]) -> None:
        await asyncio.gather(*(m.ack_sync() for m in msgs))

    def dead_letters(self, stream: str, count: int = 100) -> list[Message]:
        """The oldest ``count`` dead letters of ``stream``."""
        return self._run(self._read_dead(stream, count))

    async def _read_dead(self, stream: str, count: int) -> list[Message]:
        name = f"{self.stream_name(stream)}_dead"
        try:
            info = await self._js.stream_info(name)
        except NotFoundError:
            return []
        first, last = info.state.first_seq, info.state.last_seq
        out: list[Message] = []
        for seq in range(first, min(last, first + count - 1) + 1):
            raw = await self._js.get_msg(name, seq)
            if raw.data:
                out.append(decode(raw.data))
        return out

    def depth(self, stream: str, group: str) -> StreamDepth:
        """Stream length and the durable consumer's undelivered and unacknowledged counts."""
        return self._run(self._depth(stream, group))

    async def _depth(self, stream: str, group: str) -> StreamDepth:
        name = self.stream_name(stream)
        try:
            length = int((await self._js.stream_info(name)).state.messages)
        except NotFoundError:
            return StreamDepth(stream, group, 0, 0, 0)
        try:
            info = await self._js.consumer_info(name, _token(group))
        except NotFoundError:
            return StreamDepth(stream, group, length, length, 0)
        return StreamDepth(
            stream, group, length, int(info.num_pending or 0), int(info.num_ack_pending or 0)
        )

    def delete_streams(self) -> None:
        """Delete every stream this adapter's prefix owns (tests and teardown)."""
        self._run(self._delete_streams())

    async def _delete_streams(self) -> None:
        for info in await self._js.streams_info():
            if info.config.name and info.config.name.startswith(f"{self.prefix}_"):
                await self._js.delete_stream(info.config.name)
        self._streams.clear()
        self._subs.clear()

    def close(self) -> None:
        """Drain the connection and stop the event loop."""
        try:
            self._run(self._nc.close())
        finally:
            self._loop.stop()
