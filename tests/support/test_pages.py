"""The portal Support pages, the back-office Tickets pages, and the JSON API, with role refusals."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client as HttpClient

from brokerdesk.staff.roles import Role
from brokerdesk.support import queries, services
from brokerdesk.support.models import Ticket, TicketAttachment
from tests.support.conftest import client_with_login, staff, ticket_for

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n%%EOF\n"


def signed_in(user: Any) -> HttpClient:
    """A browser signed in as ``user``."""
    http = HttpClient()
    http.force_login(user)
    return http


# -- portal -----------------------------------------------------------------------------------


def test_the_portal_lists_only_the_clients_tickets_and_shows_the_menu_entry():
    client, login = client_with_login()
    other, other_login = client_with_login()
    ticket_for(client, login, subject="Mine to see")
    ticket_for(other, other_login, subject="Someone else's")

    page = signed_in(login).get("/portal/support/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "Mine to see" in html and "Someone else" not in html
    assert 'href="/portal/support/"' in html  # the menu entry


def test_a_client_opens_a_ticket_from_the_portal_with_an_attachment():
    client, login = client_with_login()
    http = signed_in(login)
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = http.post(
        "/portal/support/new/",
        {
            "category": "kyc",
            "payment": "",
            "subject": "Proof of address",
            "body": "Is a utility bill enough?",
            "attachment": SimpleUploadedFile("bill.pdf", PDF, content_type="application/pdf"),
        },
    )

    ticket = Ticket.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"/{ticket.id}/")
    assert ticket.client_id == client.pk and ticket.source == "portal"
    assert TicketAttachment.objects.get().filename == "bill.pdf"
    attachment = TicketAttachment.objects.get()
    download = http.get(f"/portal/support/attachments/{attachment.id}/")
    assert download.status_code == 200 and download.content == PDF
    assert (
        signed_in(client_with_login()[1])
        .get(f"/portal/support/attachments/{attachment.id}/")
        .status_code
        == 404
    )


def test_the_portal_form_names_the_missing_field():
    _, login = client_with_login()

    page = signed_in(login).post("/portal/support/new/", {"category": "kyc", "subject": ""})

    assert page.status_code == 200 and Ticket.objects.count() == 0
    assert 'class="field has-error"' in page.content.decode()


def test_the_portal_thread_hides_internal_notes_and_takes_a_reply():
    client, login = client_with_login()
    agent = staff(Role.SUPPORT)
    view = ticket_for(client, login)
    services.add_note(view.id, body="SECRET-NOTE-TEXT", by=agent)
    services.staff_reply(view.id, body="Visible answer", by=agent, then_status="pending_client")
    http = signed_in(login)

    page = http.get(f"/portal/support/{view.id}/")
    reply = http.post(f"/portal/support/{view.id}/", {"body": "Thanks!"})

    html = page.content.decode()
    assert page.status_code == 200
    assert "Visible answer" in html and "SECRET-NOTE-TEXT" not in html
    assert reply.status_code == 302
    assert queries.client_thread(client.pk, view.id).ticket.status == "open"


def test_another_clients_ticket_page_is_404_and_staff_are_sent_to_the_back_office():
    client, login = client_with_login()
    _, other_login = client_with_login()
    view = ticket_for(client, login)

    assert signed_in(other_login).get(f"/portal/support/{view.id}/").status_code == 404
    staff_visit = signed_in(staff(Role.SUPPORT)).get("/portal/support/")
    assert staff_visit.status_code == 302 and "/backoffice/" in staff_visit["Location"]
    anonymous = HttpClient().get("/portal/support/")
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]


# -- back office ------------------------------------------------------------------------------


def test_the_ticket_list_shows_queue_counts_and_sla_badges_for_support():
    client, login = client_with_login()
    view = ticket_for(client, login, subject="Needs an answer")

    page = signed_in(staff(Role.SUPPORT)).get("/backoffice/tickets/")

    html = page.content.decode()
    assert page.status_code == 200
    assert view.reference in html and 'data-queue="support"' in html
    assert 'data-sla="on_track"' in html
    assert 'href="/backoffice/tickets/"' in html  # the menu entry


def test_roles_without_a_queue_are_refused_and_finance_does_not_see_support_tickets():
    client, login = client_with_login()
    view = ticket_for(client, login, subject="Support only")

    partner_manager = signed_in(staff(Role.PARTNER_MANAGER)).get("/backoffice/tickets/")
    finance = signed_in(staff(Role.FINANCE))
    listing = finance.get("/backoffice/tickets/")
    detail = finance.get(f"/backoffice/tickets/{view.id}/")
    plain_client = signed_in(login).get("/backoffice/tickets/")

    assert partner_manager.status_code == 403
    assert listing.status_code == 200 and "Support only" not in listing.content.decode()
    assert detail.status_code == 404
    assert plain_client.status_code == 403


def test_the_ticket_page_shows_the_thread_notes_and_the_client_timeline():
    client, login = client_with_login()
    agent = staff(Role.SUPPORT)
    view = ticket_for(client, login)
    services.add_note(view.id, body="NOTE-FOR-STAFF", by=agent)

    page = signed_in(agent).get(f"/backoffice/tickets/{view.id}/")

    html = page.content.decode()
    assert page.status_code == 200
    assert "NOTE-FOR-STAFF" in html and 'data-testid="client-panel"' in html
    assert 'data-testid="timeline"' in html and client.email in html
    assert 'action="/backoffice/tickets/' in html  # the action forms


def test_staff_escalate_from_the_ticket_page_and_a_missing_reason_is_refused():
    client, login = client_with_login()
    view = ticket_for(client, login)
    http = signed_in(staff(Role.SUPPORT))

    refused = http.post(
        f"/backoffice/tickets/{view.id}/escalate/",
        {"to_queue": "finance", "reason": ""},
        follow=True,
    )
    assert Ticket.objects.get(pk=view.id).queue == "support"
    assert "reason is required" in refused.content.decode()

    done = http.post(
        f"/backoffice/tickets/{view.id}/escalate/", {"to_queue": "finance", "reason": "PSP"}
    )
    assert done.status_code == 302 and Ticket.objects.get(pk=view.id).queue == "finance"


def test_staff_reply_note_assign_tag_and_resolve_from_the_ticket_page():
    client, login = client_with_login()
    agent = staff(Role.SUPPORT)
    view = ticket_for(client, login)
    http = signed_in(agent)
    base = f"/backoffice/tickets/{view.id}"

    http.post(f"{base}/assign/", {"assignee_id": "me"})
    http.post(f"{base}/note/", {"body": "checked the PSP"})
    http.post(f"{base}/tags/", {"add": "vip, psp-delay"})
    http.post(f"{base}/reply/", {"body": "Paid today.", "then_status": "resolved"})

    detail = queries.staff_ticket(agent, view.id)
    assert detail.ticket.assignee_id == agent.pk and detail.ticket.status == "resolved"
    assert detail.tags == ["psp-delay", "vip"]
    assert [m.kind for m in detail.messages] == ["client", "note", "staff"]


def test_the_auditor_reads_tickets_but_cannot_post_actions():
    client, login = client_with_login()
    view = ticket_for(client, login)
    http = signed_in(staff(Role.AUDITOR))

    page = http.get(f"/backoffice/tickets/{view.id}/")
    action = http.post(f"/backoffice/tickets/{view.id}/status/", {"to_status": "open"})

    html = page.content.decode()
    assert page.status_code == 200 and view.reference in html
    assert f"{view.id}/status/" not in html and f"{view.id}/reply/" not in html
    assert "You can read this ticket but not change it." in html
    assert action.status_code == 403
    assert Ticket.objects.get(pk=view.id).status == "new"


def test_staff_open_a_ticket_for_a_client_by_e_mail_and_see_the_figures():
    client, _ = client_with_login(email="by.staff@example.com")
    http = signed_in(staff(Role.SUPPORT))

    response = http.post(
        "/backoffice/tickets/new/",
        {
            "email": "BY.STAFF@example.com",
            "category": "deposits",
            "queue": "finance",
            "priority": "high",
            "subject": "Card deposit declined",
            "body": "Client called about a declined card.",
        },
    )
    figures = http.get("/backoffice/tickets/figures/")

    ticket = Ticket.objects.get()
    assert response.status_code == 302
    assert ticket.client_id == client.pk and ticket.queue == "finance"
    assert figures.status_code == 200 and 'data-testid="fcr"' in figures.content.decode()


# -- API ----------------------------------------------------------------------------------------


def test_the_api_lets_a_client_open_list_read_and_reply_on_their_own_tickets():
    client, login = client_with_login()
    _, other_login = client_with_login()
    http = signed_in(login)

    created = http.post(
        "/api/v1/support/tickets",
        {"category": "platform_access", "subject": "MT5 login", "body": "Invalid account"},
        content_type="application/json",
    )
    ticket_id = created.json()["id"]
    listed = http.get("/api/v1/support/tickets")
    read = http.get(f"/api/v1/support/tickets/{ticket_id}")
    replied = http.post(
        f"/api/v1/support/tickets/{ticket_id}/replies",
        {"body": "Still failing"},
        content_type="application/json",
    )
    foreign = signed_in(other_login).get(f"/api/v1/support/tickets/{ticket_id}")

    assert created.status_code == 201 and created.json()["client_id"] == str(client.pk)
    assert [t["id"] for t in listed.json()] == [ticket_id]
    assert read.status_code == 200 and "tags" in read.json() and read.json()["tags"] == []
    assert replied.status_code == 200
    assert foreign.status_code == 404


def test_the_api_hides_notes_from_the_client_and_refuses_client_notes():
    client, login = client_with_login()
    agent = staff(Role.SUPPORT)
    view = ticket_for(client, login)
    staff_http = signed_in(agent)

    noted = staff_http.post(
        f"/api/v1/support/tickets/{view.id}/notes",
        {"body": "API-NOTE"},
        content_type="application/json",
    )
    client_read = signed_in(login).get(f"/api/v1/support/tickets/{view.id}")
    client_note = signed_in(login).post(
        f"/api/v1/support/tickets/{view.id}/notes", {"body": "x"}, content_type="application/json"
    )
    staff_read = staff_http.get(f"/api/v1/support/tickets/{view.id}")

    assert noted.status_code == 200
    assert "API-NOTE" not in client_read.content.decode()
    assert client_note.status_code == 403
    assert any(m["kind"] == "note" for m in staff_read.json()["messages"])


def test_the_api_reports_an_illegal_transition_and_an_escalation_with_clear_errors():
    client, login = client_with_login()
    view = ticket_for(client, login)
    http = signed_in(staff(Role.SUPPORT))

    illegal = http.post(
        f"/api/v1/support/tickets/{view.id}/status",
        {"to_status": "closed"},
        content_type="application/json",
    )
    escalated = http.post(
        f"/api/v1/support/tickets/{view.id}/escalate",
        {"to_queue": "dealing", "reason": "Slippage complaint"},
        content_type="application/json",
    )
    fcr = http.get("/api/v1/support/figures/first-contact-resolution")
    dealer_queues = signed_in(staff(Role.DEALING)).get("/api/v1/support/queues")

    assert illegal.status_code == 409 and illegal.json()["code"] == "illegal_transition"
    assert escalated.status_code == 200 and escalated.json()["queue"] == "dealing"
    assert fcr.status_code == 200 and fcr.json()["overall"]["resolved"] == 0
    assert [q["queue"] for q in dealer_queues.json()] == ["dealing"]
    assert dealer_queues.json()[0]["open"] == 1
