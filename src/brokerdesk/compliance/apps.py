"""Django app configuration for compliance."""

from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    """The compliance app."""

    name = "brokerdesk.compliance"
    label = "compliance"
    verbose_name = "Compliance"
