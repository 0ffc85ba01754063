"""App config of the IB portal."""

from __future__ import annotations

from django.apps import AppConfig


class PartnerPortalConfig(AppConfig):
    """The IB portal: pages only, no tables."""

    name = "brokerdesk.partnerportal"
    label = "partnerportal"
    verbose_name = "IB portal"

    def ready(self) -> None:
        """Register the IB portal's pages in its menu."""
        from django.utils.translation import gettext_lazy as _

        from brokerdesk.core.nav import register_nav

        register_nav("partners", _("Dashboard"), "partnerportal:dashboard", order=0)
        register_nav("partners", _("Referral links"), "partnerportal:links", order=10)
        register_nav("partners", _("Clients"), "partnerportal:clients", order=20)
        register_nav("partners", _("Sub-IBs"), "partnerportal:tree", order=30)
        register_nav("partners", _("Payouts"), "partnerportal:payouts", order=40)
