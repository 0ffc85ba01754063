"""Demo data of core: the demo staff login."""

from __future__ import annotations

from django.contrib.auth import get_user_model


def seed() -> str:
    """Create the demo superuser once (login shown by ``brokerdesk demo``)."""
    from brokerdesk.core.management.commands.demo import DEMO_STAFF

    user_model = get_user_model()
    username, password = DEMO_STAFF
    if user_model.objects.filter(username=username).exists():
        return f"staff login {username} exists"
    user_model.objects.create_superuser(
        username=username, email="admin@example.com", password=password
    )
    return f"staff login {username} created"
