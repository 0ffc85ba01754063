"""App config of reporting."""

from __future__ import annotations

from django.apps import AppConfig


class ReportingConfig(AppConfig):
    """Reporting: rollups, reports, exports, statements and the operations view."""

    name = "brokerdesk.reporting"
    label = "reporting"
    verbose_name = "Reporting"

    def ready(self) -> None:
        """Menu entries, the freshness collector for /metrics, and the slow-statement timer."""
        from django.db.backends.signals import connection_created
        from django.utils.translation import gettext_lazy as _

        from brokerdesk.core.nav import register_nav
        from brokerdesk.reporting import operations
        from brokerdesk.staff.roles import Role

        register_nav(
            "backoffice",
            _("Reports"),
            "reporting:reports",
            order=70,
            roles=[Role.FINANCE, Role.AUDITOR, Role.PARTNER_MANAGER],
        )
        register_nav(
            "backoffice",
            _("Operations"),
            "reporting:operations",
            order=90,
            roles=[Role.AUDITOR, Role.DEALING],
        )
        operations.register_collector()
        connection_created.connect(
            operations.install_on_connection, dispatch_uid="reporting.slow_query_timer"
        )
