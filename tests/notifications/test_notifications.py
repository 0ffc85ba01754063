"""Notifications from events: each kind, once per (event, recipient), preferences, language,
and delivery to a real SMTP server."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from brokerdesk.compliance import services as compliance
from brokerdesk.core import clock
from brokerdesk.core.errors import ValidationError
from brokerdesk.core.relay import to_message
from brokerdesk.notifications import queries, services
from brokerdesk.notifications.models import Email, Notification
from tests.compliance.test_documents import png, upload
from tests.notifications.conftest import free_port, ib_with_login, person, stand_in

pytestmark = pytest.mark.django_db


def payment(client: Any, event_type: str, amount: int = 123_450, currency: str = "USD") -> Any:
    return stand_in(
        event_type,
        "payments",
        payment_id="01a2",
        client_id=str(client.pk),
        reference="ref-1",
        amount=amount,
        currency=currency,
        actor="system:test",
    )


def bonus(client: Any, event_type: str, reason: str = "") -> Any:
    return stand_in(
        event_type,
        "bonuses",
        bonus_id="b-1",
        client_id=str(client.pk),
        currency="USD",
        amount=10_000,
        reason=reason,
        kind="tradable_credit",
        campaign="Welcome 20%",
    )


def challenge(client: Any, event_type: str, rule: str = "") -> Any:
    return stand_in(
        event_type,
        "propfirm",
        challenge_id="c-1",
        client_id=str(client.pk),
        phase="evaluation",
        rule=rule,
        figures={},
    )


def ticket(client: Any, change: str, visible: bool) -> Any:
    return stand_in(
        "ticket.updated",
        "support",
        ticket_id="t-1",
        reference="T-1042",
        client_id=str(client.pk),
        category="withdrawals",
        queue="finance",
        priority="normal",
        status="pending_client",
        change=change,
        visible_to_client=visible,
    )


CLIENT_CASES = [
    (lambda c: payment(c, "deposit.confirmed"), "deposit_received", "1,234.50"),
    (lambda c: payment(c, "withdrawal.approved"), "withdrawal_approved", "1,234.50"),
    (lambda c: bonus(c, "bonus.granted"), "bonus_granted", "100.00"),
    (lambda c: bonus(c, "bonus.forfeited", "withdrawal before unlock"), "bonus_removed", "100.00"),
    (lambda c: challenge(c, "challenge.passed"), "challenge_passed", "evaluation"),
    (
        lambda c: challenge(c, "challenge.failed", "max daily loss"),
        "challenge_failed",
        "evaluation",
    ),
    (lambda c: ticket(c, "staff_reply", True), "ticket_replied", "T-1042"),
]


@pytest.mark.parametrize(("make", "kind", "shown"), CLIENT_CASES)
def test_each_client_event_becomes_a_message_and_an_email(pipeline, make, kind, shown):
    client = person()

    assert pipeline.send(make(client)) == 1

    [message] = Notification.objects.filter(user_id=client.user.pk)
    [mail] = Email.objects.filter(to_address=client.email)
    assert message.kind == mail.kind == kind
    assert shown in message.subject + message.body
    assert mail.subject == message.subject and mail.language == "en"


def test_internal_ticket_changes_and_client_replies_notify_nobody(pipeline):
    client = person()
    pipeline.send(ticket(client, "note_added", False), ticket(client, "client_reply", False))
    assert not Notification.objects.filter(user_id=client.user.pk).exists()


def test_the_removal_and_breach_reasons_are_in_the_message(pipeline):
    client = person()
    pipeline.send(
        bonus(client, "bonus.forfeited", "withdrawal before unlock"),
        challenge(client, "challenge.failed", "daily_loss"),
    )
    bodies = {n.kind: n.body for n in Notification.objects.filter(user_id=client.user.pk)}
    assert "withdrawal before unlock" in bodies["bonus_removed"]
    assert "breached: the maximum daily loss." in bodies["challenge_failed"]


def test_a_rejected_document_tells_the_client_why(pipeline, settings, tmp_path):
    settings.DOCUMENTS_DIR = tmp_path / "documents"
    client = person()
    accepted = upload(client.pk)
    rejected = upload(client.pk, content=png(), filename="passport.png")

    compliance.review_document(accepted.id, accepted=True, by="system:test")
    compliance.review_document(
        rejected.id, accepted=False, by="system:test", note="The photo is blurred."
    )
    pipeline.send()

    [message] = Notification.objects.filter(user_id=client.user.pk)
    assert message.kind == "document_rejected"
    assert "The photo is blurred." in message.body and "passport" in message.body


def test_commission_paid_goes_to_the_ib_login(pipeline):
    ib, user = ib_with_login()
    pipeline.send(
        stand_in(
            "commission.paid",
            "partners",
            payout_id="p-1",
            ib_id=str(ib.pk),
            amount=98_765,
            currency="USD",
            accruals=3,
            ledger_transfer_id="t-1",
        )
    )
    [message] = Notification.objects.filter(user_id=user.pk)
    assert message.kind == "commission_paid" and "987.65" in message.subject
    assert "3 commission items" in message.body and "Hello Petros" in message.body
    assert Email.objects.filter(to_address=user.email).count() == 1


def test_events_about_unknown_people_or_other_things_notify_nobody(pipeline):
    ib_without_login = stand_in("commission.paid", "partners", ib_id=str(clock.now()), amount=1)
    unknown_client = stand_in(
        "deposit.confirmed", "payments", client_id="01a21ad8-d9dc-7121-b8d5-8d28cce225f5"
    )
    accepted = stand_in("compliance.document_reviewed", "compliance", status="accepted")
    assert pipeline.send(ib_without_login, unknown_client, accepted) == 3
    assert Notification.objects.count() == 0 and Email.objects.count() == 0


def test_a_redelivered_event_notifies_once(pipeline):
    from brokerdesk.core.models import OutboxEvent

    client = person()
    pipeline.send(payment(client, "deposit.confirmed"))
    row = OutboxEvent.objects.get(type="deposit.confirmed")

    pipeline.bus.publish([to_message(row)])
    pipeline.runner.drain()
    services.notify(  # and a direct repeat with the same key
        client_id=client.pk,
        kind="deposit_received",
        context={"amount": 1, "currency": "USD"},
        idempotency_key=f"{row.id}:client:{client.pk}",
    )

    assert Notification.objects.count() == 1 and Email.objects.count() == 1


def test_preferences_choose_the_channels_per_kind(pipeline):
    client = person()
    services.set_preferences(
        user_id=client.user.pk,
        language="",
        channels={
            "deposit_received": {"email": False, "in_app": True},
            "withdrawal_approved": {"email": True, "in_app": False},
        },
    )
    pipeline.send(payment(client, "deposit.confirmed"), payment(client, "withdrawal.approved"))

    assert list(Notification.objects.values_list("kind", flat=True)) == ["deposit_received"]
    assert list(Email.objects.values_list("kind", flat=True)) == ["withdrawal_approved"]
    rows = {r.kind: (r.email, r.in_app) for r in queries.preferences(client.user.pk, "client")}
    assert rows["deposit_received"] == (False, True) and rows["bonus_granted"] == (True, True)


def test_bad_preferences_are_refused():
    with pytest.raises(ValidationError) as language:
        services.set_preferences(user_id=1, language="xx", channels={})
    assert language.value.field == "language"
    with pytest.raises(ValidationError) as kind:
        services.set_preferences(user_id=1, language="", channels={"spam": {"email": True}})
    assert kind.value.field == "channels"


def test_a_message_is_written_in_the_recipients_language():
    german, french = person(language="de"), person(language="fr")
    context = {"amount": 123_450, "currency": "EUR", "occurred_at": "2026-03-02T10:00:00+00:00"}
    for who in (german, french):
        services.notify(
            client_id=who.pk, kind="deposit_received", context=context, idempotency_key=f"k{who.pk}"
        )

    de = Notification.objects.get(user_id=german.user.pk)
    fr = Notification.objects.get(user_id=french.user.pk)
    assert de.language == "de" and "1.234,50" in de.subject and "2. März 2026" in de.body
    assert fr.language == "fr" and "2 mars 2026" in fr.body


def test_the_client_records_language_is_used_when_no_preference_was_set():
    from brokerdesk.clients import services as clients

    client = person()
    clients.update_contact(
        client.pk, {"preferred_language": "de"}, by="system:test", reason="asked"
    )
    recipient = services.recipient_for(client_id=client.pk)
    assert recipient.language == "de" and recipient.user_id == client.user.pk


def test_emails_reach_a_real_smtp_server_including_a_german_one(smtp, pipeline):
    english, german = person(), person(language="de")

    pipeline.send(payment(english, "deposit.confirmed"), payment(german, "withdrawal.approved"))
    assert services.send_pending() == 2

    [en] = smtp.to(english.email)
    [de] = smtp.to(german.email)
    assert en["Subject"] == "Your deposit of 1,234.50 USD has arrived"
    assert "We received your deposit of 1,234.50 USD" in en.get_content()
    assert de["Content-Language"] == "de" and "1.234,50" in de["Subject"]
    assert de["To"] == german.email
    assert set(Email.objects.values_list("status", flat=True)) == {"sent"}
    assert services.send_pending() == 0  # nothing is sent twice


def test_mail_is_sent_after_the_commit(smtp, django_capture_on_commit_callbacks):
    client = person()
    with django_capture_on_commit_callbacks(execute=True):
        services.notify(
            client_id=client.pk,
            kind="bonus_granted",
            context={"amount": 500, "currency": "USD", "campaign": "Spring"},
            idempotency_key="after-commit",
        )
    [mail] = smtp.to(client.email)
    assert "5.00 USD" in mail["Subject"] and "Spring" in mail.get_content()


def test_an_unreachable_smtp_server_leaves_the_mail_queued_for_a_retry(settings, smtp):
    client = person()
    live_port = settings.EMAIL_PORT
    settings.EMAIL_PORT = free_port()  # nobody listens there
    services.notify(
        client_id=client.pk,
        kind="deposit_received",
        context={"amount": 100, "currency": "USD"},
        idempotency_key="retry-me",
    )
    assert services.send_pending() == 0
    queued = Email.objects.get()
    assert (queued.status, queued.attempts) == ("queued", 1) and queued.error

    settings.EMAIL_PORT = live_port
    assert services.send_pending() == 1
    assert Email.objects.get().status == "sent" and len(smtp.to(client.email)) == 1


def test_unknown_kinds_and_missing_keys_are_refused():
    client = person()
    with pytest.raises(ValidationError) as kind:
        services.notify(client_id=client.pk, kind="spam", context={}, idempotency_key="k")
    assert kind.value.field == "kind"
    with pytest.raises(ValidationError) as key:
        services.notify(client_id=client.pk, kind="bonus_granted", context={}, idempotency_key="")
    assert key.value.field == "idempotency_key"


def test_the_inbox_lists_unread_first_then_newest():
    client = person()
    with clock.frozen(clock.now()) as c:
        for n in range(3):
            services.notify(
                client_id=client.pk,
                kind="bonus_granted",
                context={"amount": n + 1, "currency": "USD"},
                idempotency_key=f"inbox-{n}",
            )
            c.advance(timedelta(minutes=1))
    oldest = Notification.objects.order_by("created_at").first()
    newest = Notification.objects.order_by("created_at").last()
    assert oldest is not None and newest is not None
    services.mark_read(newest.id, user_id=client.user.pk)

    items = queries.inbox(client.user.pk)
    assert [i.read for i in items] == [False, False, True]
    assert items[-1].id == newest.id and items[1].id == oldest.id
    assert queries.unread_count(client.user.pk) == 2
    assert services.mark_all_read(user_id=client.user.pk) == 2
