"""Who must use two-factor authentication, and the MFA adapter that keeps staff on it."""

from __future__ import annotations

from typing import Any

from allauth.mfa.adapter import DefaultMFAAdapter
from allauth.mfa.models import Authenticator
from allauth.mfa.utils import is_mfa_enabled

from brokerdesk.staff.roles import is_staff_member

# Recovery codes back up a second factor; on their own they are not one.
SECOND_FACTORS = (Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN)


def mfa_required(user: Any) -> bool:
    """Staff (any staff role, Django staff or superuser) must use a second factor."""
    if user is None or not user.is_authenticated:
        return False
    return bool(user.is_staff or user.is_superuser or is_staff_member(user))


def has_second_factor(user: Any) -> bool:
    """True when ``user`` has an active TOTP or WebAuthn authenticator."""
    return is_mfa_enabled(user, types=list(SECOND_FACTORS))


class MfaAdapter(DefaultMFAAdapter):
    """Staff may not remove their last second factor."""

    def can_delete_authenticator(self, authenticator: Authenticator) -> bool:
        """Refuse when it is a staff member's only TOTP/WebAuthn authenticator."""
        if authenticator.type not in SECOND_FACTORS or not mfa_required(authenticator.user):
            return True
        others = Authenticator.objects.filter(
            user_id=authenticator.user_id, type__in=SECOND_FACTORS
        ).exclude(pk=authenticator.pk)
        return others.exists()
