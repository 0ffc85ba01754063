"""App config of the staff back office."""

from __future__ import annotations

from django.apps import AppConfig


class BackofficeConfig(AppConfig):
    """The staff back office: pages only, no tables."""

    name = "brokerdesk.backoffice"
    label = "backoffice"
    verbose_name = "Back office"
