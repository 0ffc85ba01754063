"""App config of the staff back office."""

from __future__ import annotations

from django.apps import AppConfig


class BackofficeConfig(AppConfig):
    """The staff back office: pages only, no tables."""

    name = "brokerdesk.backoffice"
    label = "backoffice"
    verbose_name = "Back office"

    def ready(self) -> None:
        """Register the back-office screens in the staff menu, each for the roles it serves."""
        from django.utils.translation import gettext_lazy as _

        from brokerdesk.core.nav import register_nav
        from brokerdesk.staff.roles import Role

        entries = [
            (_("Dashboard"), "backoffice:dashboard", 0, ()),
            (_("Clients"), "backoffice:clients", 10, ()),
            (_("KYC reviews"), "backoffice:kyc_queue", 20, (Role.COMPLIANCE_OFFICER,)),
            (_("Withdrawals"), "backoffice:withdrawals", 30, (Role.FINANCE,)),
            (_("AML"), "backoffice:aml_alerts", 40, (Role.COMPLIANCE_OFFICER,)),
            (
                _("Reconciliation"),
                "backoffice:recon_exceptions",
                50,
                (Role.FINANCE, Role.DEALING),
            ),
            (
                _("Commissions"),
                "backoffice:commissions",
                60,
                (Role.PARTNER_MANAGER, Role.FINANCE),
            ),
            (_("IBs"), "backoffice:ibs", 70, (Role.PARTNER_MANAGER,)),
            (_("Audit log"), "backoffice:audit_log", 90, (Role.AUDITOR,)),
        ]
        for label, url_name, order, roles in entries:
            register_nav("backoffice", label, url_name, order=order, roles=roles)
