"""Demo data of the back office: the demo staff login, and one item in each work queue.

Idempotent: every step is keyed (the client's e-mail, IB codes, request keys, event ids), so
running ``brokerdesk demo`` again adds nothing.
"""

from __future__ import annotations

import struct
import zlib
from datetime import timedelta

from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model

DEMO_REVIEW_EMAIL = "kyc-review@demo.example"
SYSTEM = "system:demo"


def seed() -> str:
    """Verify the demo staff member's e-mail and fill the queues (KYC, AML, exceptions, IBs)."""
    from brokerdesk.core.management.commands.demo import DEMO_STAFF

    user = get_user_model().objects.filter(username=DEMO_STAFF[0]).first()
    if user is not None and user.email:
        EmailAddress.objects.update_or_create(
            user=user, email=user.email, defaults={"verified": True, "primary": True}
        )
    queues = [_kyc_review(), _aml_case(), _bank_exception(), _ib_tree(), _every_kyc_state()]
    login = f"staff sign-in {user.email}" if user is not None and user.email else "no staff login"
    return f"{login}; queues: {', '.join(queues)}"


def _png(width: int, height: int, rgb: bytes) -> bytes:
    """A plain PNG picture (the demo's stand-in for a scanned document)."""
    raw = b"".join(b"\x00" + rgb * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _kyc_review() -> str:
    """A client whose documents wait for a compliance officer."""
    from brokerdesk.clients import queries as client_queries
    from brokerdesk.clients import services as clients
    from brokerdesk.compliance import services as compliance
    from brokerdesk.core import clock

    if client_queries.search_clients(DEMO_REVIEW_EMAIL, limit=1):
        return "KYC review exists"
    from datetime import date

    person = clients.register_individual(
        email=DEMO_REVIEW_EMAIL,
        first_name="Eleni",
        last_name="Charalambous",
        date_of_birth=date(1987, 4, 9),
        country="CY",
        jurisdiction="cysec",
        phone="+357 22 765432",
        by=SYSTEM,
    )
    today = clock.now().date()
    compliance.upload_document(
        person.pk,
        doc_type="passport",
        content=_png(420, 280, b"\x2a\x5a\xc8"),
        by=SYSTEM,
        filename="passport.png",
        expires_on=today + timedelta(days=3000),
    )
    compliance.upload_document(
        person.pk,
        doc_type="proof_of_address",
        content=_png(300, 420, b"\xe8\xee\xfd"),
        by=SYSTEM,
        filename="utility-bill.png",
        issued_on=today - timedelta(days=25),
    )
    compliance.submit_kyc(person.pk, by=SYSTEM, provider="manual")
    return "KYC review created"


# One demo client per KYC state, and the transitions that bring a new client there.
KYC_PATHS: dict[str, tuple[str, ...]] = {
    "lead": (),
    "documents_pending": ("documents_pending",),
    "under_verification": ("under_verification",),
    "manual_review": ("under_verification", "manual_review"),
    "approved": ("under_verification", "approved"),
    "rejected": ("under_verification", "rejected"),
    "restricted": ("under_verification", "approved", "restricted"),
    "aml_review": ("under_verification", "approved", "aml_review"),
}
KYC_NAMES = {
    "lead": ("Lior", "Amsalem"),
    "documents_pending": ("Dara", "Okafor"),
    "under_verification": ("Mina", "Haddad"),
    "manual_review": ("Tomas", "Novak"),
    "approved": ("Aiko", "Tanaka"),
    "rejected": ("Pavel", "Ionescu"),
    "restricted": ("Sofia", "Marino"),
    "aml_review": ("Omar", "Farouk"),
}


def _every_kyc_state() -> str:
    """A client in each KYC state, so every queue and badge has something to show."""
    from datetime import date

    from brokerdesk.clients import queries as client_queries
    from brokerdesk.clients import services as clients
    from brokerdesk.compliance import services as compliance

    made = 0
    for state, path in KYC_PATHS.items():
        email = f"kyc-{state.replace('_', '-')}@example.com"
        if client_queries.search_clients(email, limit=1):
            continue
        first, last = KYC_NAMES[state]
        person = clients.register_individual(
            email=email,
            first_name=first,
            last_name=last,
            date_of_birth=date(1984 + made, 5, 17),
            country="CY",
            jurisdiction="cysec",
            phone=f"+357 22 10{made:04d}",
            by=SYSTEM,
        )
        for step in path:
            compliance.transition_kyc(
                person.pk, step, by=SYSTEM, reason=f"demo: a client in {state}", provider="sumsub"
            )
        made += 1
    return f"{made} clients, one per KYC state" if made else "KYC states present"


def _aml_case() -> str:
    """A large deposit that opens an AML case."""
    from brokerdesk.clients import queries as client_queries
    from brokerdesk.compliance import services as compliance
    from brokerdesk.core import clock

    found = client_queries.search_clients(DEMO_REVIEW_EMAIL, limit=1)
    if not found:
        return "no AML case"
    compliance.record_transaction(
        "demo-backoffice-large-deposit",
        client_id=found[0].id,
        kind="deposit",
        amount=1_250_000,
        currency="USD",
        occurred_at=clock.now(),
    )
    return "AML case open"


def _bank_exception() -> str:
    """A bank credit that quotes no reference: a reconciliation exception."""
    from brokerdesk.payments import services as payments

    payments.import_bank_statement(
        "transaction_id,amount,currency,remittance\n"
        "DEMO-BANK-0001,75000,USD,salary transfer without reference\n",
        by=SYSTEM,
    )
    return "payment exception open"


def _ib_tree() -> str:
    """Two IBs, a promo code and commissions waiting for approval."""
    from brokerdesk.partners import queries as partner_queries
    from brokerdesk.partners import services as partners

    codes = {row.code: row.id for row in partner_queries.all_ibs()}
    top = (
        codes.get("demo-harbour")
        or partners.create_ib(code="demo-harbour", name="Harbour Partners", by=SYSTEM).pk
    )
    child = (
        codes.get("demo-harbour-east")
        or partners.create_ib(
            code="demo-harbour-east", name="Harbour East", parent_id=top, by=SYSTEM
        ).pk
    )
    if not partner_queries.links_of(child):
        partners.create_link(child, by=SYSTEM, kind="promo", code="HARBOUR25", campaign="launch")
    for n in (1, 2, 3):
        partners.adjust(
            child, 4_250, by=SYSTEM, reason="launch campaign", request_key=f"demo-bo-{n}"
        )
    return "2 IBs with commissions to approve"
