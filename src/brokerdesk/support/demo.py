"""Demo data of support: a handful of tickets of the demo client in different states, and one
from an unknown e-mail sender. Idempotent: each demo ticket has its own idempotency key."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model

from brokerdesk.support import queries, services

DEMO_STAFF_ACTOR = "system:demo-support"


def _staff() -> Any:
    """The demo admin (a real staff name on replies) or a system actor."""
    from brokerdesk.core.management.commands.demo import DEMO_STAFF

    user = get_user_model().objects.filter(username=DEMO_STAFF[0]).first()
    return user if user is not None else DEMO_STAFF_ACTOR


def _open(client_id: Any, key: str, **fields: Any) -> tuple[queries.TicketView, bool]:
    existed = queries.key_used(key)
    view = services.open_ticket(
        client_id=client_id, by=DEMO_STAFF_ACTOR, idempotency_key=key, **fields
    )
    return view, not existed


def seed() -> str:
    """Open the demo tickets (once) and move them to their states."""
    client_id = queries.client_for_email("client@example.com")
    if client_id is None:
        return "no demo client"
    staff = _staff()
    made = 0

    view, new = _open(
        client_id,
        "demo-support-kyc",
        category="kyc",
        subject="Which documents do you need from me?",
        body="Hello, I uploaded my passport. Do you also need a proof of address?",
        source="portal",
    )
    made += new

    view, new = _open(
        client_id,
        "demo-support-withdrawal",
        category="withdrawals",
        subject="When will my withdrawal arrive?",
        body="I asked for a withdrawal yesterday. When should I expect the money?",
        source="portal",
        priority="high",
    )
    if new:
        made += 1
        services.staff_reply(
            view.id,
            body="Your withdrawal is with our finance team for approval. "
            "You will see its status on this ticket as it changes.",
            by=staff,
            then_status="pending_client",
        )
        services.add_note(
            view.id, body="Checked: KYC approved, no open flags. Escalating.", by=staff
        )
        services.escalate(view.id, to_queue="finance", reason="Payout timing question", by=staff)
        services.tag_ticket(view.id, add=["vip"], by=staff)

    view, new = _open(
        client_id,
        "demo-support-platform",
        category="platform_access",
        subject="Cannot log in to MT5",
        body="The MT5 terminal says 'invalid account'. I use the login from the e-mail.",
        source="portal",
        priority="urgent",
    )
    if new:
        made += 1
        services.staff_reply(
            view.id,
            body="Please choose the server 'Brokerdesk-Live' in the terminal. "
            "Your login works there.",
            by=staff,
            then_status="resolved",
        )

    view, new = _open(
        client_id,
        "demo-support-ib",
        category="ib_dispute",
        subject="My partner code was not applied",
        body="I registered with the code ALPHA but my partner says I am not in the list.",
        source="portal",
    )
    if new:
        made += 1
        services.change_status(view.id, "open", by=staff, reason="Looking into it")

    result = services.ingest_email(
        b"From: Visitor <visitor@example.org>\r\n"
        b"To: support@brokerdesk.example\r\n"
        b"Subject: Do you accept clients from Norway?\r\n"
        b"Message-ID: <demo-support-visitor@example.org>\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        b"Hello, can I open an account if I live in Norway?\r\n"
    )
    made += result.created
    return f"{made} demo tickets opened (5 in all, one from an unknown e-mail sender)"
