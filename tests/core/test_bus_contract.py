"""The Bus contract, the same tests against the outbox, Redis Streams and NATS JetStream."""

from __future__ import annotations

import dataclasses
import time

import pytest

from brokerdesk.core.bus.base import Bus
from brokerdesk.core.bus.nats_jetstream import NatsJetStreamBus
from brokerdesk.core.bus.redis_streams import RedisStreamsBus

from .conftest import CLAIM_IDLE_MS, message, unique

pytestmark = pytest.mark.django_db


def test_published_messages_are_read_in_order_then_gone_once_acked(bus: Bus, stream: str):
    sent = [message(stream, n) for n in range(3)]
    bus.publish(sent)

    got = bus.read(stream, "g", "c1", count=10, block_ms=1000)

    assert [d.message for d in got] == sent
    assert all(d.attempts == 1 for d in got)
    bus.ack(stream, "g", got)
    assert bus.read(stream, "g", "c1", count=10, block_ms=0) == []


def test_read_returns_at_most_count_and_continues_where_it_stopped(bus: Bus, stream: str):
    sent = [message(stream, n) for n in range(5)]
    bus.publish(sent)

    first = bus.read(stream, "g", "c1", count=2, block_ms=1000)
    rest = bus.read(stream, "g", "c1", count=10, block_ms=1000)

    assert [d.message.payload["n"] for d in first] == [0, 1]
    assert [d.message.payload["n"] for d in rest] == [2, 3, 4]


def test_every_group_gets_every_message(bus: Bus, stream: str):
    bus.publish([message(stream, n) for n in range(2)])

    a = bus.read(stream, "group-a", "c", count=10, block_ms=1000)
    b = bus.read(stream, "group-b", "c", count=10, block_ms=1000)

    assert [d.message.payload["n"] for d in a] == [0, 1]
    assert [d.message.payload["n"] for d in b] == [0, 1]


def test_streams_are_separate(bus: Bus):
    one, two = unique("one"), unique("two")
    bus.publish([message(one, 1), message(two, 2)])

    got = bus.read(one, "g", "c", count=10, block_ms=1000)

    assert [d.message.payload["n"] for d in got] == [1]


def test_unacked_message_is_redelivered_after_the_idle_time_with_attempts_counted(
    bus: Bus, stream: str
):
    bus.publish([message(stream, 7)])
    first = bus.read(stream, "g", "crashed", count=10, block_ms=1000)
    assert len(first) == 1

    assert bus.read(stream, "g", "other", count=10, block_ms=0) == []
    time.sleep(CLAIM_IDLE_MS / 1000 + 0.2)
    again = bus.read(stream, "g", "other", count=10, block_ms=1000)

    assert [d.message for d in again] == [first[0].message]
    assert again[0].attempts == 2
    bus.ack(stream, "g", again)
    time.sleep(CLAIM_IDLE_MS / 1000 + 0.2)
    assert bus.read(stream, "g", "other", count=10, block_ms=0) == []


def test_depth_counts_undelivered_and_pending(bus: Bus, stream: str):
    bus.publish([message(stream, n) for n in range(3)])
    got = bus.read(stream, "g", "c", count=2, block_ms=1000)

    depth = bus.depth(stream, "g")
    assert (depth.length, depth.undelivered, depth.pending) == (3, 1, 2)

    bus.ack(stream, "g", got)
    depth = bus.depth(stream, "g")
    assert (depth.undelivered, depth.pending) == (1, 0)


def test_read_on_an_empty_stream_waits_at_most_block_ms(bus: Bus, stream: str):
    started = time.monotonic()
    assert bus.read(stream, "g", "c", count=10, block_ms=300) == []
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 3


@pytest.mark.parametrize("bus_kind", ["redis", "nats"])
def test_message_delivered_too_often_goes_to_the_dead_letter_stream(
    bus_kind: str, bus_factory, stream: str
):
    bus = bus_factory(bus_kind, max_deliveries=1)
    poison, fine = message(stream, 1), message(stream, 2)
    bus.publish([poison])
    assert len(bus.read(stream, "g", "c", count=10, block_ms=1000)) == 1  # never acked
    bus.publish([fine])
    time.sleep(CLAIM_IDLE_MS / 1000 + 0.2)

    got = bus.read(stream, "g", "c", count=10, block_ms=1000)
    got += bus.read(stream, "g", "c", count=10, block_ms=200)

    assert [d.message for d in got] == [fine]
    assert isinstance(bus, RedisStreamsBus | NatsJetStreamBus)
    dead = bus.dead_letters(stream)
    dead_messages = [d[0] if isinstance(d, tuple) else d for d in dead]
    assert dead_messages == [poison]


def test_redis_packs_messages_into_entries_and_readers_unpack_them(bus_factory, stream: str):
    # Given a publisher that packs 3 messages per stream entry (the bridge's firehose),
    writer = bus_factory("redis", pack=3)
    sent = [message(stream, n) for n in range(7)]
    writer.publish(sent)
    assert isinstance(writer, RedisStreamsBus)
    assert writer.client.xlen(writer.key(stream)) == 3  # 3 + 3 + 1
    # a plain reader gets every message, in order, about ``count`` at a time,
    reader = bus_factory("redis", like=writer)
    first = reader.read(stream, "g", "c", count=3, block_ms=1000)
    rest = reader.read(stream, "g", "c", count=100, block_ms=1000)
    assert [d.message for d in first + rest] == sent
    assert [d.message.payload["n"] for d in first] == [0, 1, 2]
    assert len({d.delivery_id for d in first}) == 1  # one entry, one acknowledgement
    # and an entry left unacknowledged comes back whole after the idle time.
    reader.ack(stream, "g", rest)
    time.sleep(CLAIM_IDLE_MS / 1000 + 0.2)
    again = reader.read(stream, "g", "other", count=3, block_ms=1000)
    assert [d.message for d in again] == sent[:3] and {d.attempts for d in again} == {2}
    reader.ack(stream, "g", again)
    assert reader.depth(stream, "g").pending == 0


def test_redis_packs_and_reads_by_items_a_batch_message_counting_as_many(bus_factory, stream: str):
    # Given a batch message of 8 items (the bridge's columnar deals) and five plain messages,
    writer = bus_factory("redis", pack=10)
    batch = dataclasses.replace(message(stream, 0), headers={"items": "8"})
    singles = [message(stream, n) for n in range(1, 6)]
    writer.publish([batch, *singles])
    # the entries hold at most 10 items: [batch, 1, 2] and [3, 4, 5],
    assert isinstance(writer, RedisStreamsBus)
    assert writer.client.xlen(writer.key(stream)) == 2
    # and a read of 10 items returns one entry, not 10 entries of up to 10 items each.
    reader = bus_factory("redis", like=writer)
    first = reader.read(stream, "g", "c", count=10, block_ms=1000)
    assert [d.message for d in first] == [batch, *singles[:2]]
    rest = reader.read(stream, "g", "c", count=100, block_ms=1000)
    assert [d.message for d in rest] == singles[2:]
