"""App config of reporting."""

from __future__ import annotations

from django.apps import AppConfig


class ReportingConfig(AppConfig):
    """Reporting: rollups, reports, exports, statements and the operations view."""

    name = "brokerdesk.reporting"
    label = "reporting"
    verbose_name = "Reporting"
