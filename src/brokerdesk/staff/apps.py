"""Django app configuration for staff."""

from typing import Any

from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate


class StaffConfig(AppConfig):
    """The staff app: keeps the role groups in step with the role table after each migrate."""

    name = "brokerdesk.staff"
    label = "staff"
    verbose_name = "Staff roles"

    def ready(self) -> None:
        post_migrate.connect(_sync_roles_after_migrate, sender=self)


def _sync_roles_after_migrate(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    from django.contrib.auth.management import create_permissions

    from brokerdesk.staff.roles import sync_roles

    # Apps after this one in INSTALLED_APPS get their permissions later in the same migrate:
    # create them all now so that every role receives its full set.
    for app_config in apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=using)
    sync_roles(using=using)
