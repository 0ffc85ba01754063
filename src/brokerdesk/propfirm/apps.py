"""App config of propfirm."""

from __future__ import annotations

from django.apps import AppConfig


class PropfirmConfig(AppConfig):
    """Prop-firm challenges: products, phases, rules, evaluation, funded accounts, payouts."""

    name = "brokerdesk.propfirm"
    label = "propfirm"
    verbose_name = "Propfirm"

    def ready(self) -> None:
        """Put the pages in the client portal's and the back office's menus."""
        from django.utils.translation import gettext_lazy as _

        from brokerdesk.core.nav import register_nav
        from brokerdesk.staff.roles import Role

        register_nav("portal", _("Challenges"), "propfirm:portal_challenges", order=60)
        register_nav(
            "backoffice",
            _("Prop challenges"),
            "propfirm:bo_challenges",
            order=60,
            roles=[Role.DEALING, Role.ADMIN],
        )
