"""App config of automations."""

from __future__ import annotations

from django.apps import AppConfig


class AutomationsConfig(AppConfig):
    """Automations: event-triggered rules, audited runs, exceptions queue."""

    name = "brokerdesk.automations"
    label = "automations"
    verbose_name = "Automations"
