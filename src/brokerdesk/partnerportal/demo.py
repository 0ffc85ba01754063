"""Demo data of the IB portal: a partner who can sign in, with a referral link and a promo
code, and the demo client attributed to it."""

from __future__ import annotations

from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.db import transaction

from brokerdesk.clients.queries import search_clients
from brokerdesk.partners import services as partners
from brokerdesk.partners.queries import ib_id_for_user

DEMO_PARTNER = ("partner@example.com", "brokerdesk-demo")
DEMO_CLIENT_EMAIL = "client@example.com"


def seed() -> str:
    """Create the demo partner once: verified e-mail, IB profile, link, promo code."""
    email, password = DEMO_PARTNER
    user_model = get_user_model()
    user = user_model.objects.filter(email=email).first()
    if user is not None and ib_id_for_user(user) is not None:
        return f"partner sign-in {email} exists"
    with transaction.atomic():
        if user is None:
            user = user_model.objects.create_user(
                username="demopartner", email=email, password=password
            )
            EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
        ib = partners.create_ib(
            code="demo-partner", name="Demo Partner", by="system:demo", user_id=user.pk
        )
        partners.create_link(ib.pk, by="system:demo", code="demo-partner-link")
        partners.create_link(ib.pk, by="system:demo", kind="promo", code="DEMO10")
    client = next((c for c in search_clients(DEMO_CLIENT_EMAIL, limit=1)), None)
    if client is not None:
        partners.attribute_at_registration(client.id, promo_code="DEMO10", by="system:demo")
    return f"partner sign-in {email} / {password} (link /portal/join/demo-partner-link/)"
