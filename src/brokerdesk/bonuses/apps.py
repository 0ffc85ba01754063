"""App config of bonuses."""

from __future__ import annotations

from django.apps import AppConfig


class BonusesConfig(AppConfig):
    """Bonuses: campaigns, eligibility, bonus types, unlock conditions, forfeiture."""

    name = "brokerdesk.bonuses"
    label = "bonuses"
    verbose_name = "Bonuses"

    def ready(self) -> None:
        """Put the bonus pages in the portal and back-office menus."""
        from django.utils.translation import gettext_lazy as _

        from brokerdesk.core.nav import register_nav
        from brokerdesk.staff.roles import Role

        register_nav("portal", _("Bonuses"), "bonuses:portal", order=60)
        register_nav(
            "backoffice",
            _("Bonus campaigns"),
            "bonuses:campaigns",
            order=70,
            roles=[Role.FINANCE, Role.AUDITOR],
        )
