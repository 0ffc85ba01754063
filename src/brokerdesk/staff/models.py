"""staff tables: none of its own; it declares the back-office permissions as a model-less holder.

Roles are Django groups (see ``roles.ROLES``); the permissions they bundle are declared here
and on the models of the modules they guard.
"""

from __future__ import annotations

from django.db import models


class StaffPermission(models.Model):
    """No rows: carries the cross-module back-office permissions in its Meta."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("approve_withdrawal", "Approve withdrawals (maker-checker)"),
            ("manage_payments", "Manage deposits, withdrawals and payouts"),
            ("manage_trading", "Manage trading accounts and platform operations"),
            ("manage_partners", "Manage IB partners and commission plans"),
            ("manage_staff", "Manage staff users and roles"),
            ("view_reports", "View reports and audit trail"),
        ]

    def __str__(self) -> str:
        return "staff permissions"
