"""Django app configuration for payments."""

from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    """The payments app."""

    name = "brokerdesk.payments"
    label = "payments"
    verbose_name = "Payments"
