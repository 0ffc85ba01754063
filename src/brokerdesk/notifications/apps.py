"""App config of notifications."""

from __future__ import annotations

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    """Notifications: e-mail and in-app messages from events, per-locale templates, preferences."""

    name = "brokerdesk.notifications"
    label = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        """Put "Notifications" in the menus of the client portal and the IB portal."""
        from django.utils.translation import gettext_lazy as _

        from brokerdesk.core.nav import register_nav

        register_nav("portal", _("Notifications"), "notifications:portal_list", order=90)
        register_nav("partners", _("Notifications"), "notifications:partner_list", order=90)
