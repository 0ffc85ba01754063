"""Events the automations module emits (stream ``automations``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from brokerdesk.core.events import DomainEvent


@dataclass(frozen=True)
class AutomationRan(DomainEvent):
    """``automation.ran``: a rule's actions ran on an event (succeeded or failed), or a failed
    run was retried or handled by hand. ``client_id`` is the event's client, if any."""

    type: ClassVar[str] = "automation.ran"
    stream: ClassVar[str] = "automations"

    run_id: str
    rule_id: str
    rule_version: int
    event_id: str
    event_type: str
    client_id: str | None
    status: str
    attempt: int

    def aggregate_id(self) -> str:
        return self.rule_id
