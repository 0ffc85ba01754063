"""App config of automations."""

from __future__ import annotations

from django.apps import AppConfig


class AutomationsConfig(AppConfig):
    """Automations: event-triggered rules, audited runs, exceptions queue."""

    name = "brokerdesk.automations"
    label = "automations"
    verbose_name = "Automations"

    def ready(self) -> None:
        """Put "Automations" in the back office's menu (every staff role may read it)."""
        from django.utils.translation import gettext_lazy as _

        from brokerdesk.core.nav import register_nav

        register_nav("backoffice", _("Automations"), "automations:rules", order=70)
