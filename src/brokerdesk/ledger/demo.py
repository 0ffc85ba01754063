"""Demo data of the ledger: wallets with deposits, a withdrawal, a hold and an FX conversion.

Every posting uses a fixed idempotency key, so seeding twice changes nothing.
"""

from __future__ import annotations

from decimal import Decimal

from brokerdesk.ledger import services

DEMO_CLIENTS = ["demo-alice", "demo-bob", "demo-chen"]


def seed() -> str:
    """Post the demo money flow; idempotent."""
    posted = 0
    for index, client in enumerate(DEMO_CLIENTS):
        usd = services.wallet_account(client, "USD")
        clearing = services.system_account("psp_clearing", "USD", qualifier="sandbox")
        result = services.transfer(
            f"demo:{client}:deposit",
            debit_account=clearing.id,
            credit_account=usd.id,
            amount=(index + 1) * 1_000_00,
            currency="USD",
            kind="deposit",
            metadata={"psp": "sandbox", "psp_reference": f"demo_{client}"},
        )
        posted += not result.replayed
    alice = services.wallet_account("demo-alice", "USD")
    bob = services.wallet_account("demo-bob", "USD")
    clearing = services.system_account("psp_clearing", "USD", qualifier="sandbox")
    posted += not services.transfer(
        "demo:bob:withdrawal",
        debit_account=bob.id,
        credit_account=clearing.id,
        amount=250_00,
        currency="USD",
        kind="withdrawal",
    ).replayed
    posted += not services.place_hold(
        "demo:alice:hold", account=alice, amount=100_00, reason="first-deposit review"
    ).replayed
    chen_usd = services.wallet_account("demo-chen", "USD")
    chen_eur = services.wallet_account("demo-chen", "EUR")
    conversion = services.convert(
        "demo:chen:fx",
        from_account=chen_usd,
        to_account=chen_eur,
        sell_amount=500_00,
        rate=Decimal("0.9210"),
        fee_bps=25,
    )
    posted += not conversion.sold.replayed
    return f"{posted} new postings for {len(DEMO_CLIENTS)} demo clients"
