"""App config of propfirm."""

from __future__ import annotations

from django.apps import AppConfig


class PropfirmConfig(AppConfig):
    """Prop-firm challenges: products, phases, rules, evaluation, funded accounts, payouts."""

    name = "brokerdesk.propfirm"
    label = "propfirm"
    verbose_name = "Propfirm"
