"""``manage.py sync_roles``: create or update the role groups and their permissions."""

from typing import Any

from django.core.management.base import BaseCommand

from brokerdesk.staff.roles import sync_roles


class Command(BaseCommand):
    """Create or update the role groups."""

    help = "Create or update the staff role groups and their permissions."

    def handle(self, *args: Any, **options: Any) -> None:
        sync_roles()
        self.stdout.write("roles synchronised")
