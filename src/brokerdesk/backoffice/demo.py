"""Demo data of the back office: the demo staff login may sign in through allauth."""

from __future__ import annotations

from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model


def seed() -> str:
    """Mark the demo staff member's e-mail address verified (sign-in requires it)."""
    from brokerdesk.core.management.commands.demo import DEMO_STAFF

    user = get_user_model().objects.filter(username=DEMO_STAFF[0]).first()
    if user is None or not user.email:
        return "no demo staff login"
    EmailAddress.objects.update_or_create(
        user=user, email=user.email, defaults={"verified": True, "primary": True}
    )
    return f"staff sign-in {user.email} (two-factor set-up on first sign-in)"
