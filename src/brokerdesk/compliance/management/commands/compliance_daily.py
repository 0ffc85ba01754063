"""``manage.py compliance_daily``: expiry reminders, expiries, re-screening and retention."""

from typing import Any

from django.core.management.base import BaseCommand

from brokerdesk.compliance import services


class Command(BaseCommand):
    """Run the daily compliance jobs (each idempotent)."""

    help = "Remind and expire documents, re-screen clients that are due, apply retention."

    def handle(self, *args: Any, **options: Any) -> None:
        reminded = services.remind_expiring_documents()
        expired = services.expire_documents()
        screened = services.rescreen_due()
        deleted = services.apply_retention()
        self.stdout.write(
            f"reminded={reminded} expired={expired} rescreened={screened} deleted={deleted}"
        )
