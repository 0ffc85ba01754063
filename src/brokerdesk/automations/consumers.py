"""Event handlers and periodic jobs of automations (the worker imports this module).

* ``automations.run_rules`` reads every stream a trigger can come from and applies the
  enabled rules of each event's type (one query per batch finds which types have rules, so
  the trading firehose costs next to nothing). Runs are unique per (rule, event): a
  redelivered event does nothing twice, so the runner's processed-id rows are skipped
  (``keyed_writes``).
* ``automations.retry_failed`` retries failed runs whose automatic retry is due.

The partners module announces deal and CPA accruals per batch (``commissions.accrued``); the
``commission.accrued`` trigger still runs once per accrual: a batch is expanded into one
event per accrual (its id the accrual's, so a redelivered batch runs nothing twice), read
from ``partners.queries.batch_accruals`` only when a rule has that trigger.
"""

from __future__ import annotations

from brokerdesk.automations import rules, services
from brokerdesk.automations.models import Rule
from brokerdesk.core.bus.base import Message
from brokerdesk.core.consumers import consumer
from brokerdesk.core.periodic import periodic

BATCH_OF = {"commissions.accrued": "commission.accrued"}  # batch event -> per-item trigger


def _event(message: Message) -> services.Event:
    return services.Event(
        id=message.event_id,
        type=message.type,
        payload=dict(message.payload),
        occurred_at=message.occurred_at,
    )


def _expanded(message: Message) -> list[services.Event]:
    """The per-accrual ``commission.accrued`` events of a ``commissions.accrued`` batch."""
    from brokerdesk.partners.queries import batch_accruals

    return [
        services.Event(
            id=str(a.accrual_id),
            type="commission.accrued",
            payload={
                "accrual_id": str(a.accrual_id),
                "ib_id": str(a.ib_id),
                "kind": a.kind,
                "source_key": a.source_key,
                "level": a.level,
                "amount": a.amount,
                "currency": a.currency,
                "plan_version_id": str(a.plan_version_id) if a.plan_version_id else None,
                "client_id": str(a.client_id) if a.client_id else None,
                "occurred_at": a.occurred_at.isoformat(),
            },
            occurred_at=message.occurred_at,
        )
        for a in batch_accruals(message.payload)
    ]


@consumer("automations.run_rules", streams=list(rules.STREAMS), batch_size=200, keyed_writes=True)
def run_rules(messages: list[Message]) -> None:
    """Apply the enabled rules to each event of the batch, in order."""
    types = {BATCH_OF.get(m.type, m.type) for m in messages}
    types &= set(rules.TRIGGERS)
    if not types:
        return
    by_trigger: dict[str, list[Rule]] = {}
    for rule in Rule.objects.filter(trigger__in=types, enabled=True).order_by("created_at", "id"):
        by_trigger.setdefault(rule.trigger, []).append(rule)
    for message in messages:
        candidates = by_trigger.get(BATCH_OF.get(message.type, message.type))
        if not candidates:
            continue
        if message.type in BATCH_OF:
            for event in _expanded(message):
                services.apply_rules(event, candidates=candidates)
        else:
            services.apply_rules(_event(message), candidates=candidates)


@periodic("automations.retry_failed", every_s=30)
def retry_failed() -> int:
    """Retry the failed runs that are due."""
    return services.retry_due()
