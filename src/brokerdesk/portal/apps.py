"""App config of the client portal."""

from __future__ import annotations

from django.apps import AppConfig


class PortalConfig(AppConfig):
    """The client portal: pages only, no tables."""

    name = "brokerdesk.portal"
    label = "portal"
    verbose_name = "Client portal"

    def ready(self) -> None:
        """Put the surface's start page first in its menu."""
        from django.utils.translation import gettext_lazy as _

        from brokerdesk.core.nav import register_nav

        register_nav("portal", _("Dashboard"), "portal:dashboard", order=0)
