"""Trading consumers and periodic jobs (discovered by ``brokerdesk worker``).

* ``trading.ingest`` reads every configured platform server's stream (``platform.<server>``,
  from ``PLATFORM_SERVERS``) in batches of up to 5,000 deals (lingering up to 150 ms for a
  fuller batch), and applies them in the runner's one transaction per batch
  (:func:`brokerdesk.trading.ingest.apply_messages`).
* ``trading.recover_transfers`` resumes or compensates wallet↔trading transfers stuck between
  steps (a crash, a lost confirmation), asking the platform for the deal by comment.
* ``trading.deal_partitions`` keeps monthly deal partitions three months ahead (PostgreSQL).
"""

from __future__ import annotations

import structlog

from brokerdesk.core.bus.base import Message
from brokerdesk.core.consumers import consumer
from brokerdesk.core.partitions import ensure_monthly_partitions
from brokerdesk.core.periodic import periodic
from brokerdesk.trading.bridge import stream_name
from brokerdesk.trading.config import platform_servers
from brokerdesk.trading.ingest import apply_messages

log = structlog.get_logger(__name__)

INGEST_BATCH_SIZE = 5000
INGEST_MAX_WAIT_MS = 200
# A batch costs PostgreSQL a fixed ~7 ms (a summary row per account touched, the commit) on
# top of ~16 µs per deal: at 20,000 deals/s a worker that took whatever was there made
# batches of a few hundred deals and spent twice the CPU per deal. Waiting up to 150 ms for
# more gives batches of thousands for at most 150 ms more lag.
INGEST_LINGER_MS = 150


def ingest_streams() -> list[str]:
    """The bus streams of every configured platform server."""
    return [stream_name(name) for name in platform_servers()]


@consumer(
    "trading.ingest",
    streams=ingest_streams(),
    batch_size=INGEST_BATCH_SIZE,
    max_wait_ms=INGEST_MAX_WAIT_MS,
    keyed_writes=True,  # deals are unique on (server, ticket); positions and snapshots monotonic
    linger_ms=INGEST_LINGER_MS,
)
def ingest(messages: list[Message]) -> None:
    """Store deals and positions, keep account summaries, emit ``trading.deal_closed``."""
    apply_messages(messages)


@periodic("trading.recover_transfers", every_s=10)
def recover_transfers() -> int:
    """Resume or compensate transfers stuck between saga steps."""
    from brokerdesk.trading.transfers import recover_stuck_transfers

    return recover_stuck_transfers()


@periodic("trading.deal_partitions", every_s=3600)
def create_partitions() -> list[str]:
    """Keep monthly deal partitions three months ahead (PostgreSQL)."""
    return ensure_monthly_partitions("trading_deal", months_ahead=3)
