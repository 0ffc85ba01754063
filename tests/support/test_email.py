"""Inbound e-mail: new tickets, replies threaded by reference, attachments, the signed webhook
and the ``support-mail`` command."""

from __future__ import annotations

import io
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client as HttpClient
from django.test import override_settings

from brokerdesk.core.errors import ValidationError
from brokerdesk.staff.roles import Role
from brokerdesk.support import inbound, queries, services
from brokerdesk.support.models import Ticket, TicketAttachment, TicketMessage
from tests.support.conftest import client_with_login, staff, ticket_for

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
SECRET = "inbound-test-secret"
_ids = iter(range(1, 10_000))


def mail(
    sender: str = "someone@example.org",
    subject: str = "Question",
    body: str = "Hello there.",
    attachments: list[tuple[str, str, bytes]] | None = None,
    message_id: str | None = None,
) -> bytes:
    """An RFC 822 message with a unique Message-ID (unless given)."""
    msg = EmailMessage()
    msg["From"] = f"Some One <{sender}>"
    msg["To"] = "support@broker.example"
    msg["Subject"] = subject
    msg["Message-ID"] = message_id or f"<m{next(_ids)}.{time.time_ns()}@example.org>"
    msg.set_content(body)
    for filename, ctype, content in attachments or []:
        maintype, subtype = ctype.split("/")
        msg.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


def test_an_e_mail_from_a_known_client_opens_a_ticket_for_that_client():
    client, _ = client_with_login(email="Known.Client@example.com")

    result = services.ingest_email(
        mail(sender="known.client@example.com", subject="Deposit missing")
    )

    assert result.created and not result.duplicate
    assert result.ticket.client_id == client.pk and result.ticket.source == "email"
    assert result.ticket.subject == "Deposit missing"
    assert TicketMessage.objects.get(ticket_id=result.ticket.id).kind == "client"


def test_an_unknown_sender_makes_a_ticket_without_a_client():
    result = services.ingest_email(mail(sender="stranger@example.net"))

    assert result.created and result.ticket.client_id is None
    assert result.ticket.requester_email == "stranger@example.net"


def test_a_reply_carrying_the_reference_goes_onto_that_ticket():
    client, login = client_with_login(email="reply.me@example.com")
    agent = staff(Role.SUPPORT)
    view = ticket_for(client, login)
    services.staff_reply(view.id, body="Send a statement.", by=agent, then_status="pending_client")

    result = services.ingest_email(
        mail(
            sender="reply.me@example.com",
            subject=f"Re: [{view.reference}] Where is my money?",
            body="Statement attached.",
            attachments=[("statement.pdf", "application/pdf", PDF)],
        )
    )

    assert not result.created and result.ticket.id == view.id
    assert result.ticket.status == "open"  # the client answered
    assert Ticket.objects.count() == 1
    thread = queries.client_thread(client.pk, view.id)
    assert thread.messages[-1].text == "Statement attached."
    assert [a.filename for a in thread.messages[-1].attachments] == ["statement.pdf"]


def test_a_reference_from_someone_else_does_not_reach_that_ticket():
    client, login = client_with_login(email="owner@example.com")
    view = ticket_for(client, login)

    result = services.ingest_email(
        mail(sender="attacker@example.net", subject=f"Re: [{view.reference}] hi")
    )

    assert result.created and result.ticket.id != view.id
    assert result.ticket.client_id is None
    assert TicketMessage.objects.filter(ticket_id=view.id).count() == 1


def test_a_reply_to_a_closed_ticket_opens_a_new_ticket_linked_to_it():
    result = services.ingest_email(mail(sender="visitor@example.org", subject="Hello"))
    agent = staff(Role.SUPPORT)
    services.staff_reply(result.ticket.id, body="Hi.", by=agent, then_status="resolved")
    services.change_status(result.ticket.id, "closed", by=agent)

    again = services.ingest_email(
        mail(sender="visitor@example.org", subject=f"Re: {result.ticket.reference} Hello")
    )

    assert again.created and again.ticket.id != result.ticket.id
    assert again.ticket.links == {"ticket": result.ticket.reference}


def test_the_same_message_delivered_twice_is_taken_in_once():
    raw = mail(sender="twice@example.org", message_id="<same-id@example.org>")

    first = services.ingest_email(raw)
    second = services.ingest_email(raw)

    assert first.created and second.duplicate and second.ticket.id == first.ticket.id
    assert Ticket.objects.count() == 1 and TicketMessage.objects.count() == 1


def test_attachments_of_the_wrong_type_or_size_are_dropped_and_recorded():
    big = b"%PDF-" + b"0" * (inbound.MAX_ATTACHMENT_BYTES + 1)
    result = services.ingest_email(
        mail(
            attachments=[
                ("photo.png", "image/png", PNG),
                ("tool.exe", "application/octet-stream", b"MZ\x90\x00"),
                ("fake.pdf", "application/pdf", b"MZ not a pdf"),
                ("huge.pdf", "application/pdf", big),
            ]
        )
    )

    assert result.dropped == 3
    assert list(TicketAttachment.objects.values_list("filename", flat=True)) == ["photo.png"]
    message = TicketMessage.objects.get(ticket_id=result.ticket.id)
    reasons = {d["filename"]: d["reason"] for d in message.dropped_attachments}
    assert reasons == {
        "tool.exe": "type_not_allowed",
        "fake.pdf": "content_does_not_match_type",
        "huge.pdf": "too_large",
    }


def test_a_message_without_a_sender_or_too_large_is_refused():
    with pytest.raises(ValidationError) as no_sender:
        services.ingest_email(b"Subject: hi\r\n\r\nbody\r\n")
    with pytest.raises(ValidationError) as too_big:
        services.ingest_email(b"x" * (inbound.MAX_EMAIL_BYTES + 1))

    assert no_sender.value.field == "from" and too_big.value.code == "email_too_large"
    assert Ticket.objects.count() == 0


def _post(
    http: HttpClient,
    raw: bytes,
    *,
    secret: str = SECRET,
    stamp: int | None = None,
    signature: str | None = None,
) -> object:
    stamp = int(time.time()) if stamp is None else stamp
    return http.post(
        "/api/v1/support/inbound-email",
        data=raw,
        content_type="message/rfc822",
        HTTP_X_SUPPORT_TIMESTAMP=str(stamp),
        HTTP_X_SUPPORT_SIGNATURE=signature or inbound.sign(raw, stamp, secret),
    )


@override_settings(SUPPORT_INBOUND_SECRET=SECRET)
def test_the_signed_webhook_opens_a_ticket():
    response = _post(HttpClient(), mail(sender="hook@example.org", subject="Via webhook"))

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["created"] is True
    assert Ticket.objects.get(pk=body["ticket_id"]).subject == "Via webhook"


@override_settings(SUPPORT_INBOUND_SECRET=SECRET)
def test_a_forged_or_stale_signature_is_refused_and_nothing_is_written():
    http = HttpClient()
    raw = mail(sender="forger@example.org")

    forged = _post(http, raw, secret="not-the-secret")
    tampered = _post(http, raw, signature=inbound.sign(raw + b"x", int(time.time()), SECRET))
    stale = _post(http, raw, stamp=int(time.time()) - 3600)
    unsigned = http.post("/api/v1/support/inbound-email", data=raw, content_type="message/rfc822")

    assert forged.status_code == tampered.status_code == stale.status_code == 403
    assert forged.json()["code"] == "bad_signature"
    assert stale.json()["code"] == "stale_signature"
    assert unsigned.status_code == 403
    assert Ticket.objects.count() == 0


@override_settings(SUPPORT_INBOUND_SECRET="")
def test_the_webhook_refuses_everything_when_no_secret_is_configured(monkeypatch):
    monkeypatch.delenv("SUPPORT_INBOUND_SECRET", raising=False)
    response = _post(HttpClient(), mail(), secret="")

    assert response.status_code == 403
    assert response.json()["code"] == "inbound_not_configured"


def test_the_support_mail_command_reads_a_file_and_stdin(tmp_path: Path, monkeypatch):
    eml = tmp_path / "message.eml"
    eml.write_bytes(mail(sender="cli@example.org", subject="From the MTA"))
    out = io.StringIO()

    call_command("support_mail", str(eml), stdout=out)
    ticket = Ticket.objects.get()
    reply = mail(sender="cli@example.org", subject=f"Re: [{ticket.reference}] From the MTA")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(reply)))
    call_command("support_mail", "-", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines == [f"{ticket.reference}: new ticket", f"{ticket.reference}: reply added"]
    assert TicketMessage.objects.filter(ticket=ticket).count() == 2
    with pytest.raises(CommandError):
        call_command("support_mail", str(tmp_path / "missing.eml"))


def test_a_staff_reply_to_an_unknown_sender_goes_out_by_e_mail_and_the_answer_threads_back(
    django_capture_on_commit_callbacks,
):
    from django.core import mail as outbox

    opened = services.ingest_email(mail(sender="stranger@example.net", subject="Fees?"))
    with django_capture_on_commit_callbacks(execute=True):
        services.staff_reply(opened.ticket.id, body="No deposit fees.", by=staff(Role.SUPPORT))

    sent = outbox.outbox[-1]
    assert sent.to == ["stranger@example.net"]
    assert sent.subject == f"[{opened.ticket.reference}] Fees?"
    assert sent.body == "No deposit fees."
    answer = services.ingest_email(
        mail(sender="stranger@example.net", subject=f"Re: {sent.subject}", body="Thanks")
    )
    assert not answer.created and answer.ticket.id == opened.ticket.id


def test_a_client_ticket_is_not_mailed_by_support(django_capture_on_commit_callbacks):
    from django.core import mail as outbox

    client, login = client_with_login()
    view = ticket_for(client, login)
    with django_capture_on_commit_callbacks(execute=True):
        services.staff_reply(view.id, body="Answer", by=staff(Role.SUPPORT))

    assert outbox.outbox == []


@override_settings(SUPPORT_INBOUND_SECRET=SECRET)
def test_the_webhook_takes_a_message_larger_than_djangos_form_limit():
    from django.conf import settings

    scan = b"%PDF-1.4\n" + b"0" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE // 2)
    raw = mail(
        sender="big@example.org",
        attachments=[("a.pdf", "application/pdf", scan), ("b.pdf", "application/pdf", scan)],
    )
    assert len(raw) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    response = _post(HttpClient(), raw)

    assert response.status_code == 200, response.content
    assert TicketAttachment.objects.count() == 2
