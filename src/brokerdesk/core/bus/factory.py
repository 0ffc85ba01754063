"""Choose the bus adapter from ``settings.BUS_URL``: ``outbox``, ``redis://…`` or ``nats://…``."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit, urlunsplit

from django.conf import settings

from brokerdesk.core.bus.base import Bus
from brokerdesk.core.errors import ValidationError


def get_bus(url: str | None = None, *, prefix: str | None = None, pack: int | None = None) -> Bus:
    """A new bus adapter for ``url`` (default ``settings.BUS_URL``); the caller closes it.

    Query options (removed before connecting): ``claim_idle_ms``, ``max_deliveries`` and,
    for Redis, ``maxlen`` and ``pack`` (messages per stream entry, see
    :class:`~brokerdesk.core.bus.redis_streams.RedisStreamsBus`); for example
    ``redis://127.0.0.1:6379/0?maxlen=1000000``. ``pack`` given here wins over the URL's (the
    bridge packs its firehose); other buses ignore it.
    """
    url = url or settings.BUS_URL
    prefix = prefix or settings.BUS_STREAM_PREFIX
    parts = urlsplit(url)
    options = {k: int(v[-1]) for k, v in parse_qs(parts.query).items()}
    claim_idle_ms = options.pop("claim_idle_ms", 30_000)
    max_deliveries = options.pop("max_deliveries", 10)
    maxlen = options.pop("maxlen", None)
    url_pack = options.pop("pack", 1)
    base_url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    scheme = parts.scheme or parts.path
    if options:
        raise ValidationError(f"Unknown bus options {sorted(options)}.", field="BUS_URL")
    if scheme == "outbox":
        from brokerdesk.core.bus.outbox import OutboxBus

        return OutboxBus(claim_idle_ms=claim_idle_ms)
    if scheme in {"redis", "rediss", "unix"}:
        from brokerdesk.core.bus.redis_streams import RedisStreamsBus

        return RedisStreamsBus(
            base_url,
            prefix=prefix,
            maxlen=maxlen,
            claim_idle_ms=claim_idle_ms,
            max_deliveries=max_deliveries,
            pack=pack if pack is not None else url_pack,
        )
    if scheme in {"nats", "tls"}:
        from brokerdesk.core.bus.nats_jetstream import NatsJetStreamBus

        return NatsJetStreamBus(
            base_url,
            prefix=prefix,
            claim_idle_ms=claim_idle_ms,
            max_deliveries=max_deliveries,
            max_msgs=maxlen,
        )
    raise ValidationError(
        f"BUS_URL {url!r}: use 'outbox', 'redis://…' or 'nats://…'.",
        code="unknown_bus",
        field="BUS_URL",
    )
