"""App config of support."""

from __future__ import annotations

from django.apps import AppConfig


class SupportConfig(AppConfig):
    """Support: tickets, queues, escalation, SLA, notes and tags."""

    name = "brokerdesk.support"
    label = "support"
    verbose_name = "Support"
