"""Demo data of notifications: the demo client's first messages (created once)."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from brokerdesk.notifications import services
from brokerdesk.notifications.models import Notification

DEMO_EMAIL = "client@example.com"


def seed() -> str:
    """Give the demo client a welcome deposit message and a bonus message (idempotent)."""
    user = get_user_model().objects.filter(email=DEMO_EMAIL).first()
    if user is None:
        return "notifications: no demo client"
    services.notify(
        user_id=user.pk,
        kind="deposit_received",
        context={"amount": 100_000, "currency": "USD"},
        idempotency_key="demo:deposit",
    )
    services.notify(
        user_id=user.pk,
        kind="bonus_granted",
        context={"amount": 20_000, "currency": "USD", "campaign": "Welcome 20%"},
        idempotency_key="demo:bonus",
    )
    count = Notification.objects.filter(user_id=user.pk).count()
    return f"notifications: {count} messages for {DEMO_EMAIL}"
