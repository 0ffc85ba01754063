"""App config of the staff back office."""

from __future__ import annotations

from django.apps import AppConfig


class BackofficeConfig(AppConfig):
    """The staff back office: pages only, no tables."""

    name = "brokerdesk.backoffice"
    label = "backoffice"
    verbose_name = "Back office"

    def ready(self) -> None:
        """Put the surface's start page first in its menu."""
        from django.utils.translation import gettext_lazy as _

        from brokerdesk.core.nav import register_nav

        register_nav("backoffice", _("Dashboard"), "backoffice:dashboard", order=0)
