"""Django app configuration for ledger."""

from django.apps import AppConfig


class LedgerConfig(AppConfig):
    """The ledger app."""

    name = "brokerdesk.ledger"
    label = "ledger"
    verbose_name = "Ledger"
