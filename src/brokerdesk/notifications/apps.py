"""App config of notifications."""

from __future__ import annotations

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    """Notifications: e-mail and in-app messages from events, per-locale templates, preferences."""

    name = "brokerdesk.notifications"
    label = "notifications"
    verbose_name = "Notifications"
