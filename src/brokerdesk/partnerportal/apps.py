"""App config of the IB portal."""

from __future__ import annotations

from django.apps import AppConfig


class PartnerPortalConfig(AppConfig):
    """The IB portal: pages only, no tables."""

    name = "brokerdesk.partnerportal"
    label = "partnerportal"
    verbose_name = "IB portal"
