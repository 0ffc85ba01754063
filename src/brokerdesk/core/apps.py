"""Django app configuration for core."""

from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The core app."""

    name = "brokerdesk.core"
    label = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        """Configure structured logging (idempotent)."""
        from brokerdesk.core.logging import configure

        configure()
