"""Demo data of bonuses: a welcome campaign, a promo-code campaign, a rebate, and a few
grants (one partly unlocked by trading). Keys are fixed, so seeding twice changes nothing."""

from __future__ import annotations

from datetime import date
from uuid import UUID

from brokerdesk.bonuses import services
from brokerdesk.clients import services as clients
from brokerdesk.clients.queries import search_clients
from brokerdesk.compliance import services as compliance
from brokerdesk.compliance.kyc import KycState
from brokerdesk.compliance.queries import kyc_status
from brokerdesk.core import clock

ACTOR = "system:demo"
DEMO_CLIENTS = (("bonus.ana@example.com", "Ana"), ("bonus.ravi@example.com", "Ravi"))


def _demo_client(email: str, first_name: str) -> UUID:
    """A verified client under the Seychelles-like rule set (bonuses allowed there)."""
    found = [c for c in search_clients(email) if c.email == email]
    client_id = (
        found[0].id
        if found
        else clients.register_individual(
            email=email,
            first_name=first_name,
            last_name="Demo",
            date_of_birth=date(1988, 4, 9),
            country="GB",
            jurisdiction="fsa-sc",
            by=ACTOR,
        ).pk
    )
    if kyc_status(client_id).state != KycState.APPROVED:
        for step in (KycState.UNDER_VERIFICATION, KycState.APPROVED):
            compliance.transition_kyc(client_id, step, by=ACTOR, reason="demo", provider="demo")
    return client_id


def seed() -> str:
    """Create the demo campaigns and grants once."""
    compliance.load_bundled_rule_sets()
    welcome = services.create_campaign(
        code="welcome",
        by=ACTOR,
        name="Welcome bonus 50 %",
        kind="credit",
        trigger="deposit",
        currency="USD",
        percent_bps=5_000,
        max_per_grant=50_000,
        deposit_sequence="first",
        kyc_states=["approved"],
        unlock_per_lot=500,
        expiry_days=60,
    )
    services.create_campaign(
        code="spring-promo",
        by=ACTOR,
        name="Spring tradable credit",
        kind="tradable_credit",
        trigger="promo",
        promo_code="SPRING25",
        currency="USD",
        fixed_amount=2_500,
        lots_required=50_000,
        window_days=30,
        expiry_days=45,
    )
    rebate = services.create_campaign(
        code="vip-rebate",
        by=ACTOR,
        name="VIP rebate",
        kind="rebate",
        trigger="manual",
        currency="USD",
        rebate_per_lot=300,
        max_per_grant=100_000,
    )
    ana, ravi = (_demo_client(email, name) for email, name in DEMO_CLIENTS)
    first = services.grant_manual(
        campaign_id=welcome.id,
        client_id=ana,
        amount=25_000,
        reason="Welcome bonus on the first deposit",
        by=ACTOR,
        request_key="demo-welcome-ana",
    )
    services.grant_manual(
        campaign_id=rebate.id,
        client_id=ravi,
        amount=100_000,
        reason="VIP programme",
        by=ACTOR,
        request_key="demo-rebate-ravi",
    )
    for n, (client_id, lots) in enumerate(((ana, 30_000), (ravi, 50_000))):
        services.apply_deal(
            services.DealFacts(
                server="demo",
                deal=900_000 + n,
                login=70_000 + n,
                client_id=client_id,
                currency="USD",
                volume=lots,
                net_profit=-4_000,
                closed_at=clock.now(),
            )
        )
    return (
        f"3 bonus campaigns; grants for 2 demo clients ({'new' if not first.replayed else 'kept'})"
    )
