"""App config of the client portal."""

from __future__ import annotations

from django.apps import AppConfig


class PortalConfig(AppConfig):
    """The client portal: pages only, no tables."""

    name = "brokerdesk.portal"
    label = "portal"
    verbose_name = "Client portal"

    def ready(self) -> None:
        """Register the portal's pages in its menu (deposit, withdrawal and transfer are
        reached from the wallets and accounts pages)."""
        from django.utils.translation import gettext_lazy as _

        from brokerdesk.core.nav import register_nav

        register_nav("portal", _("Dashboard"), "portal:dashboard", order=0)
        register_nav("portal", _("Wallets"), "portal:wallets", order=10)
        register_nav("portal", _("Accounts"), "portal:accounts", order=20)
        register_nav("portal", _("History"), "portal:history", order=30)
        register_nav("portal", _("Statements"), "portal:statements", order=40)
        register_nav("portal", _("Verification"), "portal:kyc", order=50)
        register_nav("portal", _("Profile"), "portal:profile", order=90)
