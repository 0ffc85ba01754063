"""Django app configuration for partners."""

from django.apps import AppConfig


class PartnersConfig(AppConfig):
    """The partners (IB programme) app."""

    name = "brokerdesk.partners"
    label = "partners"
    verbose_name = "Partners"
