"""Prometheus metrics of the event pipeline and the idempotency guards.

Other modules import the objects from here (for example the ledger increments
``IDEMPOTENT_REPLAYS.labels(kind="ledger_transfer")`` when it rejects a replayed key).
The ``/metrics`` view in ``core.views`` exposes the default registry.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_RELAYED = Counter(
    "brokerdesk_events_relayed_total",
    "Outbox events published to the bus by the relay.",
    ["stream"],
)
RELAY_BATCH_SECONDS = Histogram(
    "brokerdesk_relay_batch_seconds",
    "Time to publish and stamp one relay batch.",
)
OUTBOX_UNRELAYED = Gauge(
    "brokerdesk_outbox_unrelayed",
    "Outbox events not yet relayed to the bus.",
)
CONSUMER_BATCHES = Counter(
    "brokerdesk_consumer_batches_total",
    "Batches handled by a consumer, by outcome (ok, retried, failed).",
    ["consumer", "outcome"],
)
CONSUMER_EVENTS = Counter(
    "brokerdesk_consumer_events_total",
    "Events handled by a consumer.",
    ["consumer"],
)
CONSUMER_DUPLICATES = Counter(
    "brokerdesk_consumer_duplicates_total",
    "Redelivered events a consumer dropped because it had processed them already.",
    ["consumer"],
)
CONSUMER_BATCH_SECONDS = Histogram(
    "brokerdesk_consumer_batch_seconds",
    "Time to handle one consumer batch (handler and commit).",
    ["consumer"],
)
CONSUMER_LAG_SECONDS = Gauge(
    "brokerdesk_consumer_lag_seconds",
    "Seconds between the oldest event of the last batch occurring and its processing.",
    ["consumer"],
)
STREAM_DEPTH = Gauge(
    "brokerdesk_stream_depth",
    "Backlog of a consumer group on a stream: undelivered or pending (unacknowledged).",
    ["stream", "group", "state"],
)
DEAD_LETTERS = Counter(
    "brokerdesk_dead_letters_total",
    "Messages a consumer gave up on and dead-lettered.",
    ["consumer"],
)
IDEMPOTENT_REPLAYS = Counter(
    "brokerdesk_idempotent_replays_total",
    "Writes rejected because their idempotency key was already recorded, by kind.",
    ["kind"],
)
