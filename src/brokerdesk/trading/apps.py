"""Django app configuration for trading."""

from django.apps import AppConfig


class TradingConfig(AppConfig):
    """The trading app."""

    name = "brokerdesk.trading"
    label = "trading"
    verbose_name = "Trading"
