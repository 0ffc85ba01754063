"""Tickets: opening, the status machine, replies, notes, escalation, assignment, tags, events."""

from __future__ import annotations

import pytest

from brokerdesk.core.errors import Conflict, IllegalTransition, PermissionDenied, ValidationError
from brokerdesk.core.models import AuditEntry, OutboxEvent
from brokerdesk.staff.roles import Role
from brokerdesk.support import queries, services, states
from brokerdesk.support.models import Ticket, TicketChange, TicketMessage
from tests.support.conftest import client_with_login, staff, ticket_for

pytestmark = pytest.mark.django_db

ALL_STATUSES = list(states.STATUSES)
LEGAL = {(a, b) for a, targets in states.TICKET_TRANSITIONS.items() for b in targets}


def _force_status(ticket_id: object, status: str) -> None:
    """Put a ticket straight into ``status`` (test set-up only)."""
    Ticket.objects.filter(pk=ticket_id).update(status=status)


def test_a_client_opens_a_ticket_for_themselves_with_an_event_and_an_audit_entry():
    client, login = client_with_login()

    view = ticket_for(client, login)

    assert view.status == "new" and view.queue == "support" and view.priority == "normal"
    assert view.reference.startswith("T-") and len(view.reference) == 10
    event = OutboxEvent.objects.get(type="ticket.opened")
    assert event.payload["client_id"] == str(client.pk)
    assert event.payload["reference"] == view.reference
    assert AuditEntry.objects.filter(
        action="support.ticket_opened", object_id=str(view.id)
    ).exists()
    assert TicketMessage.objects.get(ticket_id=view.id).kind == "client"


def test_a_client_cannot_open_a_ticket_for_someone_else_or_choose_queue_and_priority():
    client, login = client_with_login()
    other, _ = client_with_login()

    with pytest.raises(PermissionDenied):
        ticket_for(other, login)
    with pytest.raises(PermissionDenied):
        ticket_for(client, login, priority="urgent")
    with pytest.raises(PermissionDenied):
        ticket_for(client, login, queue="finance")
    assert Ticket.objects.count() == 0


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("category", "refunds", "invalid_category"),
        ("subject", "   ", "required"),
        ("body", "", "required"),
        ("source", "fax", "invalid_source"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(field, value, code):
    client, login = client_with_login()

    with pytest.raises(ValidationError) as caught:
        ticket_for(client, login, **{field: value})

    assert caught.value.field == field and caught.value.code == code
    assert Ticket.objects.count() == 0
    assert not OutboxEvent.objects.filter(stream="support").exists()


def test_the_same_idempotency_key_returns_the_first_ticket():
    client, login = client_with_login()

    first = ticket_for(client, login, idempotency_key="portal-form-1")
    again = ticket_for(client, login, idempotency_key="portal-form-1", subject="Other")

    assert again.id == first.id and Ticket.objects.count() == 1
    other, other_login = client_with_login()
    with pytest.raises(Conflict):
        ticket_for(other, other_login, idempotency_key="portal-form-1")


@pytest.mark.parametrize("current", ALL_STATUSES)
@pytest.mark.parametrize("target", ALL_STATUSES)
def test_status_changes_follow_the_table_and_an_illegal_one_changes_nothing(current, target):
    client, login = client_with_login()
    agent = staff(Role.SUPPORT)
    view = ticket_for(client, login)
    _force_status(view.id, current)
    changes_before = TicketChange.objects.count()

    if (current, target) in LEGAL:
        after = services.change_status(view.id, target, by=agent, reason="test")
        assert after.status == target
        assert TicketChange.objects.count() == changes_before + 1
    else:
        with pytest.raises(IllegalTransition):
            services.change_status(view.id, target, by=agent)
        assert Ticket.objects.get(pk=view.id).status == current
        assert TicketChange.objects.count() == changes_before


def test_a_staff_reply_opens_a_new_ticket_and_stops_the_first_response_clock():
    client, login = client_with_login()
    agent = staff(Role.SUPPORT)
    view = ticket_for(client, login)

    after = services.staff_reply(view.id, body="We are on it.", by=agent)

    assert after.status == "open" and after.first_response_at is not None
    updated = OutboxEvent.objects.filter(type="ticket.updated").get()
    assert updated.payload["change"] == "staff_reply" and updated.payload["visible_to_client"]


def test_a_staff_reply_may_wait_for_the_client_and_the_client_reply_opens_it_again():
    client, login = client_with_login()
    agent = staff(Role.SUPPORT)
    view = ticket_for(client, login)

    waiting = services.staff_reply(
        view.id, body="Send a bank statement.", by=agent, then_status="pending_client"
    )
    answered = services.client_reply(view.id, client_id=client.pk, body="Attached.", by=login)

    assert waiting.status == "pending_client"
    assert answered.status == "open"


def test_a_client_reply_reopens_a_resolved_ticket_and_counts_the_reopen():
    client, login = client_with_login()
    agent = staff(Role.SUPPORT)
    view = ticket_for(client, login)
    services.staff_reply(view.id, body="Done.", by=agent, then_status="resolved")

    again = services.client_reply(view.id, client_id=client.pk, body="Still missing.", by=login)

    row = Ticket.objects.get(pk=view.id)
    assert again.status == "open" and row.reopened_count == 1 and row.resolved_at is None
    assert TicketChange.objects.filter(ticket_id=view.id, action="reopened").exists()


def test_a_closed_ticket_takes_no_replies_from_anyone():
    client, login = client_with_login()
    agent = staff(Role.SUPPORT)
    view = ticket_for(client, login)
    services.staff_reply(view.id, body="Done.", by=agent, then_status="resolved")
    services.change_status(view.id, "closed", by=agent)
    count = TicketMessage.objects.count()

    with pytest.raises(Conflict):
        services.client_reply(view.id, client_id=client.pk, body="Hello?", by=login)
    with pytest.raises(Conflict):
        services.staff_reply(view.id, body="Hello?", by=agent)
    assert TicketMessage.objects.count() == count


def test_a_client_cannot_reply_on_another_clients_ticket():
    client, login = client_with_login()
    other, other_login = client_with_login()
    view = ticket_for(client, login)

    with pytest.raises(PermissionDenied):
        services.client_reply(view.id, client_id=client.pk, body="Hi", by=other_login)
    with pytest.raises(Exception) as caught:
        services.client_reply(view.id, client_id=other.pk, body="Hi", by=other_login)
    assert getattr(caught.value, "code", "") == "ticket_not_found"


def test_internal_notes_are_audited_and_never_reach_the_event_stream():
    client, login = client_with_login()
    agent = staff(Role.SUPPORT)
    view = ticket_for(client, login)
    events_before = OutboxEvent.objects.count()

    services.add_note(view.id, body="Possible bonus abuser — check IP", by=agent)

    assert OutboxEvent.objects.count() == events_before
    assert AuditEntry.objects.filter(action="support.note_added").exists()
    assert all("bonus abuser" not in str(e.payload) for e in OutboxEvent.objects.all())


def test_escalation_moves_the_queue_clears_the_assignee_and_is_audited_with_its_reason():
    client, login = client_with_login()
    agent = staff(Role.SUPPORT)
    view = ticket_for(client, login)
    services.assign(view.id, assignee_id=agent.pk, by=agent)

    after = services.escalate(
        view.id, to_queue="finance", reason="Payout stuck at the PSP", by=agent
    )

    assert after.queue == "finance" and after.assignee_id is None
    entry = AuditEntry.objects.get(action="support.escalated", object_id=str(view.id))
    assert entry.reason == "Payout stuck at the PSP"
    assert entry.before["queue"] == "support" and entry.after["queue"] == "finance"
    assert entry.actor == f"user:{agent.pk}"
    change = TicketChange.objects.get(ticket_id=view.id, action="escalated")
    assert (change.from_value, change.to_value) == ("support", "finance")
    event = OutboxEvent.objects.filter(type="ticket.updated").order_by("-occurred_at").first()
    assert event is not None and event.payload["change"] == "escalated"


def test_escalation_needs_a_reason_a_known_path_and_the_current_queues_role():
    client, login = client_with_login()
    agent = staff(Role.SUPPORT)
    finance = staff(Role.FINANCE)
    auditor = staff(Role.AUDITOR)
    view = ticket_for(client, login)

    with pytest.raises(ValidationError) as no_reason:
        services.escalate(view.id, to_queue="finance", reason=" ", by=agent)
    with pytest.raises(ValidationError) as same_queue:
        services.escalate(view.id, to_queue="support", reason="x", by=agent)
    with pytest.raises(PermissionDenied):
        services.escalate(view.id, to_queue="finance", reason="x", by=finance)
    with pytest.raises(PermissionDenied):
        services.escalate(view.id, to_queue="finance", reason="x", by=auditor)

    assert no_reason.value.field == "reason"
    assert same_queue.value.code == "invalid_escalation"
    assert Ticket.objects.get(pk=view.id).queue == "support"
    assert not AuditEntry.objects.filter(action="support.escalated").exists()


def test_after_escalation_the_receiving_queue_works_the_ticket_and_the_sender_no_longer_can():
    client, login = client_with_login()
    agent = staff(Role.SUPPORT)
    officer = staff(Role.COMPLIANCE_OFFICER)
    view = ticket_for(client, login, category="kyc")
    services.escalate(view.id, to_queue="compliance", reason="Source of funds", by=agent)

    services.add_note(view.id, body="Requested SoF documents.", by=officer)

    with pytest.raises(PermissionDenied):
        services.add_note(view.id, body="Me too", by=agent)


def test_tickets_are_assigned_only_to_staff_of_their_queue():
    client, login = client_with_login()
    agent = staff(Role.SUPPORT)
    dealer = staff(Role.DEALING)
    view = ticket_for(client, login)

    with pytest.raises(ValidationError) as caught:
        services.assign(view.id, assignee_id=dealer.pk, by=agent)
    assigned = services.assign(view.id, assignee_id=agent.pk, by=agent)

    assert caught.value.field == "assignee_id"
    assert assigned.assignee_id == agent.pk
    assert AuditEntry.objects.filter(action="support.assigned").count() == 1


def test_tags_are_cleaned_added_and_removed():
    client, login = client_with_login()
    agent = staff(Role.SUPPORT)
    view = ticket_for(client, login)

    tags = services.tag_ticket(view.id, add=["VIP", "ib-relationship", "vip"], by=agent)
    tags = services.tag_ticket(view.id, add=["compliance_flag"], remove=["vip"], by=agent)

    assert tags == ["compliance_flag", "ib-relationship"]
    with pytest.raises(ValidationError):
        services.tag_ticket(view.id, add=["no spaces!"], by=agent)
    found = queries.staff_tickets(agent, queries.TicketFilters(tag="ib-relationship"))
    assert [t.id for t in found] == [view.id]


def test_staff_open_a_ticket_for_a_non_client_e_mail_address_in_any_queue():
    finance = staff(Role.FINANCE)

    view = services.open_ticket(
        client_id=None,
        requester_email="Someone@Example.org",
        category="deposits",
        subject="Wire without a reference",
        body="A wire of 500 EUR came in without a reference.",
        source="staff",
        by=finance,
        queue="finance",
        priority="high",
    )

    assert view.client_id is None and view.requester_email == "someone@example.org"
    assert view.queue == "finance" and view.priority == "high"
    with pytest.raises(PermissionDenied):
        services.open_ticket(
            client_id=None,
            category="other",
            subject="x",
            body="y",
            source="staff",
            by=staff(Role.AUDITOR),
        )


def test_resolved_tickets_close_automatically_after_seven_days():
    from datetime import timedelta

    from brokerdesk.core import clock
    from tests.support.conftest import T0

    client, login = client_with_login()
    agent = staff(Role.SUPPORT)
    with clock.frozen(T0) as c:
        view = ticket_for(client, login)
        services.staff_reply(view.id, body="Done.", by=agent, then_status="resolved")
        c.advance(timedelta(days=6, hours=23))
        assert services.close_resolved() == 0
        c.advance(timedelta(hours=2))
        assert services.close_resolved() == 1

    assert Ticket.objects.get(pk=view.id).status == "closed"
