"""App config of the IB portal."""

from __future__ import annotations

from django.apps import AppConfig


class PartnerPortalConfig(AppConfig):
    """The IB portal: pages only, no tables."""

    name = "brokerdesk.partnerportal"
    label = "partnerportal"
    verbose_name = "IB portal"

    def ready(self) -> None:
        """Put the surface's start page first in its menu."""
        from django.utils.translation import gettext_lazy as _

        from brokerdesk.core.nav import register_nav

        register_nav("partners", _("Dashboard"), "partnerportal:dashboard", order=0)
