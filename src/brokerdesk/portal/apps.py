"""App config of the client portal."""

from __future__ import annotations

from django.apps import AppConfig


class PortalConfig(AppConfig):
    """The client portal: pages only, no tables."""

    name = "brokerdesk.portal"
    label = "portal"
    verbose_name = "Client portal"
