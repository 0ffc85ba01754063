"""App config of bonuses."""

from __future__ import annotations

from django.apps import AppConfig


class BonusesConfig(AppConfig):
    """Bonuses: campaigns, eligibility, bonus types, unlock conditions, forfeiture."""

    name = "brokerdesk.bonuses"
    label = "bonuses"
    verbose_name = "Bonuses"
