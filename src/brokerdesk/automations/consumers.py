"""Event handlers and periodic jobs of automations (the worker imports this module).

* ``automations.run_rules`` reads every stream a trigger can come from and applies the
  enabled rules of each event's type (one query per batch finds which types have rules, so
  the trading firehose costs next to nothing). Runs are unique per (rule, event): a
  redelivered event does nothing twice, so the runner's processed-id rows are skipped
  (``keyed_writes``).
* ``automations.retry_failed`` retries failed runs whose automatic retry is due.
"""

from __future__ import annotations

from brokerdesk.automations import rules, services
from brokerdesk.automations.models import Rule
from brokerdesk.core.bus.base import Message
from brokerdesk.core.consumers import consumer
from brokerdesk.core.periodic import periodic


def _event(message: Message) -> services.Event:
    return services.Event(
        id=message.event_id,
        type=message.type,
        payload=dict(message.payload),
        occurred_at=message.occurred_at,
    )


@consumer("automations.run_rules", streams=list(rules.STREAMS), batch_size=200, keyed_writes=True)
def run_rules(messages: list[Message]) -> None:
    """Apply the enabled rules to each event of the batch, in order."""
    types = {m.type for m in messages if m.type in rules.TRIGGERS}
    if not types:
        return
    by_trigger: dict[str, list[Rule]] = {}
    for rule in Rule.objects.filter(trigger__in=types, enabled=True).order_by("created_at", "id"):
        by_trigger.setdefault(rule.trigger, []).append(rule)
    for message in messages:
        candidates = by_trigger.get(message.type)
        if candidates:
            services.apply_rules(_event(message), candidates=candidates)


@periodic("automations.retry_failed", every_s=30)
def retry_failed() -> int:
    """Retry the failed runs that are due."""
    return services.retry_due()
