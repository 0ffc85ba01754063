"""Back-office screens through Django's test client: real data, the right role allowed, the
wrong role refused (403), maker-checker refusals, field errors, htmx fragments."""

from __future__ import annotations

import struct
import zlib
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client as WebClient

from brokerdesk.backoffice import read
from brokerdesk.clients import queries as client_queries
from brokerdesk.compliance import queries as compliance_queries
from brokerdesk.compliance import services as compliance
from brokerdesk.compliance.kyc import KycState
from brokerdesk.core import audit, clock
from brokerdesk.core.models import AuditEntry
from brokerdesk.partners import queries as partner_queries
from brokerdesk.partners import services as partners
from brokerdesk.payments import queries as payment_queries
from brokerdesk.payments import services as payments
from brokerdesk.staff.roles import Role, grant_role
from brokerdesk.trading.models import ReconciliationException, ReconciliationRun
from tests.clients.factories import individual
from tests.payments.conftest import funded, local_psp, new_client  # noqa: F401 - fixture
from tests.web.conftest import verified_user

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


# -- helpers ---------------------------------------------------------------------------------


def staff(*roles: Role) -> Any:
    """A staff user holding ``roles`` (no password: the tests sign in with force_login, and
    password hashing is slow on purpose)."""
    user = verified_user(password=None)
    grant_role(user, *roles)
    return user


def browser(user: Any) -> WebClient:
    """A test client signed in as ``user``."""
    web = WebClient()
    web.force_login(user)
    return web


def real_png(width: int = 240, height: int = 160) -> bytes:
    """A small valid PNG (a blue rectangle) that a browser can show."""
    raw = b"".join(b"\x00" + b"\x2a\x5a\xc8" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def client_under_verification(**overrides: Any) -> Any:
    """A client with a passport and a proof of address, sent to verification."""
    person = individual(**overrides)
    today = clock.now().date()
    compliance.upload_document(
        person.pk,
        doc_type="passport",
        content=real_png(),
        by="system:test",
        filename="passport.png",
        expires_on=today + timedelta(days=3650),
    )
    compliance.upload_document(
        person.pk,
        doc_type="proof_of_address",
        content=real_png(200, 280),
        by="system:test",
        filename="bill.png",
        issued_on=today - timedelta(days=20),
    )
    compliance.submit_kyc(person.pk, by="system:test", provider="manual")
    return person


def pending_withdrawal(psp: Any, *, requested_by: Any, amount: int = 150_000) -> Any:
    """A verified, funded client's withdrawal above the auto-approval limit."""
    person = new_client(verified=True)
    deposit = funded(psp, person, 400_000)
    return payments.request_withdrawal(
        person.pk,
        amount=amount,
        currency="USD",
        method_id=deposit.method_id,
        request_id=f"bo-wd-{person.pk}",
        by=requested_by,
    )


@pytest.fixture(autouse=True)
def documents_dir(settings: Any, tmp_path: Any) -> Any:
    """Documents go to a per-test directory."""
    settings.DOCUMENTS_DIR = tmp_path / "documents"
    return settings.DOCUMENTS_DIR


# -- access ----------------------------------------------------------------------------------

PAGES_AND_ROLES = [
    ("/backoffice/kyc/", Role.COMPLIANCE_OFFICER, Role.FINANCE),
    ("/backoffice/withdrawals/", Role.FINANCE, Role.COMPLIANCE_OFFICER),
    ("/backoffice/aml/", Role.COMPLIANCE_OFFICER, Role.SUPPORT),
    ("/backoffice/reconciliation/", Role.DEALING, Role.PARTNER_MANAGER),
    ("/backoffice/commissions/", Role.PARTNER_MANAGER, Role.DEALING),
    ("/backoffice/ibs/", Role.PARTNER_MANAGER, Role.FINANCE),
    ("/backoffice/audit/", Role.AUDITOR, Role.SUPPORT),
    ("/backoffice/clients/", Role.SUPPORT, None),
]


@pytest.mark.parametrize(("path", "allowed", "refused"), PAGES_AND_ROLES)
def test_each_screen_opens_for_its_role_and_refuses_the_others(path, allowed, refused):
    assert browser(staff(allowed)).get(path).status_code == 200
    assert browser(staff(Role.ADMIN)).get(path).status_code == 200
    if refused is not None:
        response = browser(staff(refused)).get(path)
        assert response.status_code == 403
        assert "This page is not part of your role." in response.content.decode()


def test_a_client_and_an_anonymous_visitor_are_kept_out():
    customer = verified_user(password=None)
    assert browser(customer).get("/backoffice/clients/").status_code == 403
    response = WebClient().get("/backoffice/withdrawals/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_menu_shows_only_the_screens_of_the_role():
    page = browser(staff(Role.FINANCE)).get("/backoffice/").content.decode()
    assert 'href="/backoffice/withdrawals/"' in page
    assert 'href="/backoffice/reconciliation/"' in page
    assert 'href="/backoffice/kyc/"' not in page
    assert 'href="/backoffice/audit/"' not in page


# -- dashboard -------------------------------------------------------------------------------


def test_the_dashboard_shows_the_days_money_new_clients_and_queues(local_psp):  # noqa: F811
    person = new_client(verified=True)
    funded(local_psp, person, 250_000)
    client_under_verification()

    response = browser(staff(Role.SUPPORT)).get("/backoffice/", {"currency": "USD", "days": 7})

    page = response.content.decode()
    assert response.status_code == 200
    assert "2,500.00 USD" in page  # the deposit, in the totals and the day's row
    figures = response.context["figures"]
    assert figures.days[-1].deposits == 250_000 and figures.days[-1].new_clients == 2
    queues = {q.url_name: q.count for q in figures.queues}
    assert queues["backoffice:kyc_queue"] == 1
    assert "chart.umd.min.js" in page and 'id="dashboard-data"' in page
    assert figures.lag is not None  # the bus answered
    assert "Support" in page


def test_dashboard_figures_follow_the_chosen_period_and_currency():
    chosen, currencies, rows = read.daily_figures(30, "JPY")
    assert len(rows) == 30 and rows[-1].day == clock.now().date()
    assert chosen == "USD" and currencies == ["USD"]  # no money moved: the default currency


# -- KYC review ------------------------------------------------------------------------------


def test_the_kyc_queue_lists_waiting_clients_and_the_officer_approves_one():
    person = client_under_verification(first_name="Eleni")
    officer = staff(Role.COMPLIANCE_OFFICER)
    web = browser(officer)

    queue = web.get("/backoffice/kyc/").content.decode()
    assert person.display_name in queue
    review = web.get(f"/backoffice/kyc/{person.pk}/").content.decode()
    assert "Passport" in review and "Proof of address" in review

    response = web.post(
        f"/backoffice/kyc/{person.pk}/", {"decision": "approve", "reason": "documents match"}
    )

    assert response.status_code == 302 and response["Location"] == "/backoffice/kyc/"
    assert compliance_queries.kyc_status(person.pk).state == KycState.APPROVED
    history = compliance_queries.kyc_history(person.pk)
    assert history[-1].actor == f"user:{officer.pk}" and history[-1].reason == "documents match"
    assert person.display_name not in web.get("/backoffice/kyc/").content.decode()


def test_a_kyc_decision_without_a_reason_is_refused_with_a_field_error():
    person = client_under_verification()
    web = browser(staff(Role.COMPLIANCE_OFFICER))

    response = web.post(f"/backoffice/kyc/{person.pk}/", {"decision": "reject", "reason": ""})

    assert response.status_code == 400
    assert "Give a reason: it is kept in the audit log." in response.content.decode()
    assert compliance_queries.kyc_status(person.pk).state == KycState.UNDER_VERIFICATION


def test_an_illegal_kyc_decision_shows_the_services_refusal():
    person = client_under_verification()
    web = browser(staff(Role.COMPLIANCE_OFFICER))
    web.post(
        f"/backoffice/kyc/{person.pk}/", {"decision": "reject", "reason": "fake", "final": "on"}
    )

    response = web.post(f"/backoffice/kyc/{person.pk}/", {"decision": "approve", "reason": "oops"})

    assert response.status_code == 409
    assert "cannot move to approved" in response.content.decode()
    assert compliance_queries.kyc_status(person.pk).state == KycState.REJECTED


def test_a_kyc_decision_is_refused_to_support_staff():
    person = client_under_verification()
    response = browser(staff(Role.SUPPORT)).post(
        f"/backoffice/kyc/{person.pk}/", {"decision": "approve", "reason": "looks fine"}
    )
    assert response.status_code == 403
    assert compliance_queries.kyc_status(person.pk).state == KycState.UNDER_VERIFICATION


def test_the_document_viewer_issues_a_logged_signed_url_that_serves_the_file():
    person = client_under_verification()
    officer = staff(Role.COMPLIANCE_OFFICER)
    web = browser(officer)
    passport = next(
        d for d in compliance_queries.documents_of(person.pk) if d.doc_type == "passport"
    )

    fragment = web.get(f"/backoffice/kyc/documents/{passport.id}/", **HTMX)

    assert fragment.status_code == 200
    url = fragment.context["url"]
    assert url.startswith("/api/v1/compliance/documents/download/")
    assert "<html" not in fragment.content.decode()  # a fragment for the viewer pane
    accesses = compliance_queries.document_accesses(passport.id)
    assert [(a.action, a.actor) for a in accesses] == [("url_issued", f"user:{officer.pk}")]
    download = web.get(url)
    assert download.status_code == 200 and b"".join(download.streaming_content) == real_png()


def test_the_document_viewer_is_refused_to_finance():
    person = client_under_verification()
    doc = compliance_queries.documents_of(person.pk)[0]
    assert (
        browser(staff(Role.FINANCE)).get(f"/backoffice/kyc/documents/{doc.id}/").status_code == 403
    )
    assert compliance_queries.document_accesses(doc.id) == []


def test_a_document_is_reviewed_inline_and_a_rejection_needs_a_note():
    person = client_under_verification()
    web = browser(staff(Role.COMPLIANCE_OFFICER))
    doc = compliance_queries.documents_of(person.pk)[0]
    path = f"/backoffice/kyc/documents/{doc.id}/review/"

    refused = web.post(path, {"accepted": "0", "note": ""}, **HTMX)
    assert refused.status_code == 200  # htmx swaps the row with its error
    assert "A rejection needs a note for the client." in refused.content.decode()
    assert compliance_queries.get_document(doc.id).status == "received"

    accepted = web.post(path, {"accepted": "1", "note": ""}, **HTMX)
    assert f'id="doc-{doc.id}"' in accepted.content.decode()
    assert compliance_queries.get_document(doc.id).status == "accepted"


# -- withdrawals -----------------------------------------------------------------------------


def test_the_withdrawal_queue_shows_the_checks_and_the_risk(local_psp):  # noqa: F811
    wd = pending_withdrawal(local_psp, requested_by="system:test")
    compliance.record_transaction(
        "bo-large",
        client_id=wd.client_id,
        kind="deposit",
        amount=1_000_000,
        currency="USD",
        occurred_at=clock.now(),
    )

    response = browser(staff(Role.FINANCE)).get("/backoffice/withdrawals/")

    page = response.content.decode()
    assert wd.reference in page and "1,500.00 USD" in page
    assert "Policy: may withdraw" in page and "large_deposit (medium)" in page
    assert 'data-risk="medium"' in page


def test_the_requester_cannot_approve_their_own_withdrawal(local_psp):  # noqa: F811
    maker = staff(Role.FINANCE)
    wd = pending_withdrawal(local_psp, requested_by=maker)
    web = browser(maker)

    response = web.post(
        f"/backoffice/withdrawals/{wd.id}/decide/", {"decision": "approve", "reason": "ok"}
    )

    assert response.status_code == 403
    page = response.content.decode()
    assert "The approver must be a different person from the requester." in page
    assert "You requested this withdrawal: another person must approve it." in page
    assert payment_queries.get_withdrawal(wd.id).status == "pending_approval"


def test_a_second_person_approves_a_withdrawal_inline(local_psp):  # noqa: F811
    wd = pending_withdrawal(local_psp, requested_by=staff(Role.FINANCE))
    checker = staff(Role.FINANCE)

    response = browser(checker).post(
        f"/backoffice/withdrawals/{wd.id}/decide/",
        {"decision": "approve", "reason": "source of funds checked"},
        **HTMX,
    )

    assert response.status_code == 200
    assert "Decision recorded: the withdrawal is now approved." in response.content.decode()
    approved = payment_queries.get_withdrawal(wd.id)
    assert approved.status == "approved" and approved.approved_by == f"user:{checker.pk}"


def test_a_withdrawal_rejection_needs_a_reason_and_unlocks_the_money_when_given(local_psp):  # noqa: F811
    wd = pending_withdrawal(local_psp, requested_by="system:test")
    web = browser(staff(Role.FINANCE))
    path = f"/backoffice/withdrawals/{wd.id}/decide/"

    missing = web.post(path, {"decision": "reject", "reason": "  "})
    assert missing.status_code == 400
    assert "Give a reason: it is kept in the audit log." in missing.content.decode()

    done = web.post(path, {"decision": "reject", "reason": "card expired"})
    assert done.status_code == 302
    assert payment_queries.get_withdrawal(wd.id).status == "rejected"


def test_withdrawal_decisions_are_refused_to_compliance(local_psp):  # noqa: F811
    wd = pending_withdrawal(local_psp, requested_by="system:test")
    response = browser(staff(Role.COMPLIANCE_OFFICER)).post(
        f"/backoffice/withdrawals/{wd.id}/decide/", {"decision": "approve", "reason": "x"}
    )
    assert response.status_code == 403
    assert payment_queries.get_withdrawal(wd.id).status == "pending_approval"


# -- client search and 360 ---------------------------------------------------------------------


def test_client_search_finds_by_name_and_htmx_gets_only_the_results():
    wanted = individual(first_name="Theodora", last_name="Kyprianou")
    other = individual(first_name="Andreas", last_name="Georgiou")
    web = browser(staff(Role.SUPPORT))

    page = web.get("/backoffice/clients/", {"q": "kyprian"}).content.decode()
    assert wanted.display_name in page and other.display_name not in page
    fragment = web.get("/backoffice/clients/", {"q": "georg"}, **HTMX).content.decode()
    assert other.display_name in fragment and "<html" not in fragment


def test_the_client_page_gathers_profile_kyc_wallets_ib_and_timeline(local_psp):  # noqa: F811
    person = new_client(verified=True)
    funded(local_psp, person, 120_000)
    manager = staff(Role.PARTNER_MANAGER)
    ib = partners.create_ib(code="harbour", name="Harbour Partners", by=manager)
    partners.request_reassignment(person.pk, ib.pk, by=manager, reason="signed the form")

    response = browser(staff(Role.SUPPORT)).get(f"/backoffice/clients/{person.pk}/")

    page = response.content.decode()
    assert response.status_code == 200
    assert person.display_name in page and person.email in page
    assert "1,200.00 USD" in page  # the wallet
    assert 'data-testid="ib">harbour<' in page
    assert 'data-state="approved"' in page
    timeline = client_queries.timeline(person.pk)
    assert timeline and timeline[0].summary in page
    for module, name, marker in (
        ("brokerdesk.bonuses.queries", "bonuses_of", "bonuses-unavailable"),
        ("brokerdesk.support.queries", "tickets_of", "tickets-unavailable"),
    ):
        present = read.optional_query(module, name) is not None
        assert (marker in page) is not present


def test_an_unknown_client_is_a_404():
    web = browser(staff(Role.SUPPORT))
    assert web.get("/backoffice/clients/01890000-0000-7000-8000-000000000000/").status_code == 404


# -- AML -------------------------------------------------------------------------------------


def test_an_aml_case_shows_its_alert_takes_a_note_and_closes_with_an_outcome():
    person = individual()
    compliance.record_transaction(
        "aml-1",
        client_id=person.pk,
        kind="deposit",
        amount=1_200_000,
        currency="USD",
        occurred_at=clock.now(),
    )
    case = compliance_queries.cases(client_id=person.pk)[0]
    officer = staff(Role.COMPLIANCE_OFFICER)
    web = browser(officer)

    page = web.get("/backoffice/aml/").content.decode()
    assert "large_deposit" in page and person.display_name in page

    noted = web.post(f"/backoffice/aml/cases/{case.id}/note/", {"text": "asked for payslips"})
    assert noted.status_code == 302
    missing = web.post(f"/backoffice/aml/cases/{case.id}/close/", {"outcome": "false_positive"})
    assert missing.status_code == 400
    closed = web.post(
        f"/backoffice/aml/cases/{case.id}/close/",
        {"outcome": "false_positive", "reason": "salary bonus, documented"},
    )
    assert closed.status_code == 302
    after = compliance_queries.cases(client_id=person.pk)[0]
    assert after.status == "closed" and after.outcome == "false_positive"
    assert any(text == "asked for payslips" for _, text, _ in after.notes)
    closed_page = web.get("/backoffice/aml/", {"status": "closed"}).content.decode()
    assert "salary bonus, documented" in closed_page


# -- reconciliation --------------------------------------------------------------------------


def trading_exception() -> ReconciliationException:
    """A platform-reconciliation mismatch as a run would record it (test set-up)."""
    now = clock.now()
    run = ReconciliationRun.objects.create(
        server="mt5-demo",
        currency="USD",
        period_start=now - timedelta(days=1),
        period_end=now,
        ledger_count=1,
        platform_count=0,
        matched=0,
        exceptions=1,
        created_at=now,
    )
    return ReconciliationException.objects.create(
        run=run,
        kind="missing_on_platform",
        comment="bd:t:0001",
        ledger_amount=60_000,
        ledger_reference="trading.transfer:1:post",
        created_at=now,
    )


def test_reconciliation_exceptions_are_resolved_with_a_mandatory_note():
    payments.import_bank_statement(
        "transaction_id,amount,currency,remittance\nBNK-77,50000,USD,no reference here\n"
    )
    payment_exc = payment_queries.exceptions(status="new")[0]
    trade_exc = trading_exception()
    finance = staff(Role.FINANCE)
    web = browser(finance)

    page = web.get("/backoffice/reconciliation/").content.decode()
    assert payment_exc.kind in page and "bd:t:0001" in page and "600.00 USD" in page

    blank = web.post(f"/backoffice/reconciliation/payments/{payment_exc.id}/resolve/", {"note": ""})
    assert blank.status_code == 400
    assert "Give a reason: it is kept in the audit log." in blank.content.decode()
    done = web.post(
        f"/backoffice/reconciliation/payments/{payment_exc.id}/resolve/",
        {"note": "a client's wire without reference, matched by hand"},
    )
    assert done.status_code == 302
    assert payment_queries.exceptions(status="resolved")[0].id == payment_exc.id

    dealer = browser(staff(Role.DEALING))
    assert (
        dealer.post(
            f"/backoffice/reconciliation/payments/{payment_exc.id}/resolve/", {"note": "x"}
        ).status_code
        == 403
    )
    resolved = dealer.post(
        f"/backoffice/reconciliation/trading/{trade_exc.pk}/resolve/",
        {"note": "the platform was down; re-sent"},
    )
    assert resolved.status_code == 302
    from brokerdesk.trading import reconciliation as trading_recon

    assert trading_recon.exceptions() == []
    entry = audit.entries(action="trading.reconciliation_exception.resolved")[0]
    assert entry.reason == "the platform was down; re-sent"


# -- commissions -----------------------------------------------------------------------------


def test_a_commission_batch_is_approved_then_made_payable():
    manager = staff(Role.PARTNER_MANAGER)
    ib = partners.create_ib(code="delta", name="Delta Introducers", by=manager)
    for n in (1, 2):
        partners.adjust(ib.pk, 2_500, by=manager, reason="Q3 campaign bonus", request_key=f"q3-{n}")
    web = browser(staff(Role.FINANCE))

    page = web.get("/backoffice/commissions/").content.decode()
    assert "Delta Introducers" in page and "50.00 USD" in page
    form = {"ib_id": str(ib.pk), "state": "accrued", "currency": "USD", "action": "approve"}
    assert web.post("/backoffice/commissions/decide/", form).status_code == 302
    groups = partner_queries.accrual_groups()
    assert [(g.state, g.count, g.amount) for g in groups] == [("approved", 2, 5_000)]

    form.update(state="approved", action="make_payable")
    assert web.post("/backoffice/commissions/decide/", form).status_code == 302
    assert partner_queries.accrual_groups() == []
    assert partner_queries.payable_total(ib.pk, "USD") == 5_000


def test_cancelling_a_commission_batch_needs_a_reason_and_dealing_is_refused():
    manager = staff(Role.PARTNER_MANAGER)
    ib = partners.create_ib(code="echo", name="Echo IB", by=manager)
    partners.adjust(ib.pk, 1_000, by=manager, reason="goodwill", request_key="echo-1")
    form = {"ib_id": str(ib.pk), "state": "accrued", "currency": "USD", "action": "cancel"}

    refused = browser(staff(Role.DEALING)).post("/backoffice/commissions/decide/", form)
    assert refused.status_code == 403
    response = browser(manager).post("/backoffice/commissions/decide/", form)
    assert response.status_code == 400
    assert "A cancellation needs a reason." in response.content.decode()
    assert partner_queries.accrual_groups()[0].state == "accrued"


# -- IB management ---------------------------------------------------------------------------


def test_a_partner_manager_creates_an_ib_under_a_parent_and_a_promo_code():
    manager = staff(Role.PARTNER_MANAGER)
    top = partners.create_ib(code="alpha", name="Alpha Group", by=manager)
    web = browser(manager)

    created = web.post(
        "/backoffice/ibs/new/",
        {"code": "alpha-east", "name": "Alpha East", "parent": str(top.pk), "currency": "USD"},
    )
    assert created.status_code == 302
    child = next(r for r in partner_queries.all_ibs() if r.code == "alpha-east")
    assert child.parent_id == top.pk and child.depth == 1

    duplicate = web.post(
        "/backoffice/ibs/new/", {"code": "alpha", "name": "Again", "parent": "", "currency": "USD"}
    )
    assert duplicate.status_code == 409 and "exists" in duplicate.content.decode()

    web.post(f"/backoffice/ibs/{child.id}/", {"kind": "promo", "code": "east25", "campaign": "Q4"})
    assert [(link.kind, link.code) for link in partner_queries.links_of(child.id)] == [
        ("promo", "EAST25")
    ]
    tree = web.get("/backoffice/ibs/").content.decode()
    assert tree.index("Alpha Group") < tree.index("Alpha East")


def test_moving_a_funded_client_needs_a_second_partner_manager(local_psp):  # noqa: F811
    person = new_client(verified=True)
    maker, checker = staff(Role.PARTNER_MANAGER), staff(Role.PARTNER_MANAGER)
    first = partners.create_ib(code="first", name="First IB", by=maker)
    second = partners.create_ib(code="second", name="Second IB", by=maker)
    partners.request_reassignment(person.pk, first.pk, by="system:test", reason="registration")
    funded(local_psp, person, 100_000)
    partners.record_funding(
        person.pk, amount=100_000, currency="USD", reference="dep-1", at=clock.now()
    )
    web = browser(maker)

    web.post(
        "/backoffice/ibs/reassign/",
        {"client_id": str(person.pk), "to_ib": str(second.pk), "reason": "client asked"},
    )
    pending = partner_queries.reassignments(state="pending")
    assert len(pending) == 1 and pending[0].to_ib == "second"

    own = web.post(
        f"/backoffice/ibs/reassignments/{pending[0].id}/decide/", {"decision": "approve"}
    )
    assert own.status_code == 403
    assert "The approver must be a different person from the requester." in own.content.decode()
    assert partner_queries.attributed_ib_code(person.pk) == "first"

    ok = browser(checker).post(
        f"/backoffice/ibs/reassignments/{pending[0].id}/decide/",
        {"decision": "approve", "reason": "confirmed by e-mail"},
    )
    assert ok.status_code == 302
    assert partner_queries.attributed_ib_code(person.pk) == "second"


# -- audit log -------------------------------------------------------------------------------


def test_the_audit_log_filters_shows_differences_and_verifies_the_chains():
    person = client_under_verification()
    compliance.approve_kyc(person.pk, by="system:reviewer", reason="all good")
    web = browser(staff(Role.AUDITOR))

    page = web.get(
        "/backoffice/audit/", {"actor": "system:reviewer", "object_id": str(person.pk)}
    ).content.decode()

    assert "kyc.approved" in page and "all good" in page
    assert "under_verification" in page and "approved" in page  # before → after
    assert "compliance.document_uploaded" not in page  # filtered out by actor
    fragment = web.get("/backoffice/audit/", {"action": "compliance.document"}, **HTMX)
    assert fragment.content.decode().count('class="bo-audit-entry"') == 2
    assert 'data-ok="unknown"' in page  # not verified yet
    verify = web.post("/backoffice/audit/verify/", **HTMX).content.decode()
    assert 'data-ok="true"' in verify
    assert 'data-ok="true"' in web.get("/backoffice/audit/").content.decode()  # remembered


def test_the_audit_log_reports_a_broken_chain():
    client_under_verification()
    AuditEntry.objects.filter(pk=AuditEntry.objects.order_by("pk").first().pk).update(
        reason="tampered"
    )
    verify = browser(staff(Role.AUDITOR)).post("/backoffice/audit/verify/", **HTMX)
    assert (
        'data-ok="false"' in verify.content.decode() and "entry altered" in verify.content.decode()
    )


def test_audit_dates_are_checked():
    response = browser(staff(Role.AUDITOR)).get(
        "/backoffice/audit/", {"since": "2026-05-02", "until": "2026-05-01"}
    )
    assert response.status_code == 400
    assert "The end date is before the start date." in response.content.decode()


# -- demo data -------------------------------------------------------------------------------


def test_the_demo_seed_puts_one_item_in_each_queue_once():
    from brokerdesk.backoffice import demo

    demo.seed()
    summary = demo.seed()  # the second run adds nothing

    assert "KYC review exists" in summary and "AML case open" in summary
    counts = compliance_queries.kyc_state_counts()
    shown = {state for state, n in counts.items() if n}
    assert set(demo.KYC_PATHS) - {"lead"} <= shown  # every state after registration
    assert counts.get("under_verification") == 2  # the review client and the state's example
    assert compliance_queries.open_case_count() == 1
    assert len(payment_queries.exceptions(status="new")) == 1
    groups = partner_queries.accrual_groups()
    assert [(g.ib_code, g.count, g.amount) for g in groups] == [("demo-harbour-east", 3, 12_750)]


def test_the_client_page_lists_the_clients_support_tickets():
    from brokerdesk.support import services as support

    person = individual()
    support.open_ticket(
        client_id=person.pk,
        category="withdrawals",
        subject="Where is my withdrawal?",
        body="It has been three days.",
        source="portal",
        by="system:test",
    )

    page = browser(staff(Role.SUPPORT)).get(f"/backoffice/clients/{person.pk}/").content.decode()

    assert 'data-testid="tickets"' in page and "Where is my withdrawal?" in page


def test_the_audit_log_finds_a_persons_actions_by_their_e_mail_address():
    person = client_under_verification()
    officer = staff(Role.COMPLIANCE_OFFICER)
    compliance.approve_kyc(person.pk, by=officer, reason="checked by hand")

    page = (
        browser(staff(Role.AUDITOR))
        .get("/backoffice/audit/", {"actor": officer.email.upper()})
        .content.decode()
    )

    assert "kyc.approved" in page and "checked by hand" in page
    assert officer.email in page  # shown by name, not as user:<id>
    assert "compliance.document_uploaded" not in page


def test_an_auditor_reads_a_document_but_cannot_decide_kyc():
    person = client_under_verification()
    auditor = browser(staff(Role.AUDITOR))
    doc = compliance_queries.documents_of(person.pk)[0]

    viewer = auditor.get(f"/backoffice/kyc/documents/{doc.id}/")

    assert (
        viewer.status_code == 200 and f"/backoffice/clients/{person.pk}/" in viewer.content.decode()
    )
    assert auditor.get(f"/backoffice/kyc/{person.pk}/").status_code == 403
    missing = browser(staff(Role.COMPLIANCE_OFFICER)).get(
        "/backoffice/kyc/01890000-0000-7000-8000-000000000000/"
    )
    assert missing.status_code == 404


def test_a_second_approval_of_the_same_withdrawal_is_refused_cleanly(local_psp):  # noqa: F811
    wd = pending_withdrawal(local_psp, requested_by="system:test")
    first, second = browser(staff(Role.FINANCE)), browser(staff(Role.FINANCE))
    path = f"/backoffice/withdrawals/{wd.id}/decide/"

    assert first.post(path, {"decision": "approve", "reason": "ok"}).status_code == 302
    again = second.post(path, {"decision": "approve", "reason": "me too"})

    assert again.status_code == 409
    assert "cannot become approved" in again.content.decode()
    approved = payment_queries.get_withdrawal(wd.id)
    assert approved.status == "approved" and approved.approved_by != ""


def test_resolving_an_exception_someone_else_resolved_says_so_at_the_top():
    payments.import_bank_statement(
        "transaction_id,amount,currency,remittance\nBNK-88,1000,USD,no reference\n"
    )
    exc = payment_queries.exceptions(status="new")[0]
    payments.resolve_exception(exc.id, by="system:test", note="matched by the night job")

    response = browser(staff(Role.FINANCE)).post(
        f"/backoffice/reconciliation/payments/{exc.id}/resolve/", {"note": "mine"}
    )

    assert response.status_code == 409
    assert "cannot become resolved" in response.content.decode()


def test_the_client_page_lists_the_clients_bonuses():
    from brokerdesk.bonuses import services as bonuses

    person = individual(country="GB", jurisdiction="fsa-sc")  # bonuses are allowed there
    for step in (KycState.UNDER_VERIFICATION, KycState.APPROVED):
        compliance.transition_kyc(person.pk, step, by="system:test", reason="t", provider="sumsub")
    campaign = bonuses.create_campaign(
        code="bo-rebate",
        by="system:test",
        name="VIP rebate",
        kind="rebate",
        trigger="manual",
        currency="USD",
        rebate_per_lot=300,
        max_per_grant=100_000,
    )
    granted = bonuses.grant_manual(
        campaign_id=campaign.id,
        client_id=person.pk,
        amount=40_000,
        reason="VIP programme",
        by="system:test",
        request_key=f"bo-bonus-{person.pk}",
    )
    assert granted.bonus_id is not None, granted.refusal

    page = browser(staff(Role.SUPPORT)).get(f"/backoffice/clients/{person.pk}/").content.decode()

    assert 'data-testid="bonuses"' in page
    assert "VIP rebate" in page and "400.00 USD" in page
