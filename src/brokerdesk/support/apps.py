"""App config of support."""

from __future__ import annotations

from django.apps import AppConfig


class SupportConfig(AppConfig):
    """Support: tickets, queues, escalation, SLA, notes and tags."""

    name = "brokerdesk.support"
    label = "support"
    verbose_name = "Support"

    def ready(self) -> None:
        """Put "Support" in the client portal's menu and "Tickets" in the back office's."""
        from django.utils.translation import gettext_lazy as _

        from brokerdesk.core.nav import register_nav
        from brokerdesk.support.states import QUEUE_ROLES, READ_ONLY_ROLES

        register_nav("portal", _("Support"), "support:portal_tickets", order=80)
        register_nav(
            "backoffice",
            _("Tickets"),
            "support:tickets",
            order=20,
            roles=[*QUEUE_ROLES.values(), *READ_ONLY_ROLES],
        )
