"""Demo data of reporting: the rollups of every event the other modules' demos stored.

The demo runs without a worker, so nothing has projected those events yet; ``catch_up``
applies them once (facts are keyed, so seeding again adds nothing).
"""

from __future__ import annotations

from brokerdesk.reporting.services import catch_up


def seed() -> str:
    """Project the stored events into the rollups; idempotent."""
    result = catch_up()
    return f"rollups: {result.facts} new facts from {result.events} stored events"
