"""Who sees what: a client only their tickets and never internal notes; staff only their queues."""

from __future__ import annotations

import pytest

from brokerdesk.core.errors import NotFound, PermissionDenied
from brokerdesk.staff.roles import Role
from brokerdesk.support import queries, services
from tests.support.conftest import client_with_login, staff, ticket_for

pytestmark = pytest.mark.django_db


def test_a_client_lists_only_their_own_tickets_newest_first():
    client, login = client_with_login()
    other, other_login = client_with_login()
    first = ticket_for(client, login, subject="First")
    second = ticket_for(client, login, subject="Second")
    ticket_for(other, other_login, subject="Not yours")

    mine = queries.tickets_of(client.pk)

    assert {t.id for t in mine} == {first.id, second.id}
    assert all(t.client_id == client.pk for t in mine)


def test_the_client_thread_never_contains_internal_notes():
    client, login = client_with_login()
    agent = staff(Role.SUPPORT)
    view = ticket_for(client, login)
    services.add_note(view.id, body="INTERNAL: suspected chargeback fraud", by=agent)
    services.staff_reply(view.id, body="We are checking with the bank.", by=agent)

    thread = queries.client_thread(client.pk, view.id)
    staff_view = queries.staff_ticket(agent, view.id)

    assert [m.kind for m in thread.messages] == ["client", "staff"]
    assert all("INTERNAL" not in m.text for m in thread.messages)
    assert [m.kind for m in staff_view.messages] == ["client", "note", "staff"]


def test_another_clients_ticket_is_not_found_rather_than_forbidden():
    client, login = client_with_login()
    other, _ = client_with_login()
    view = ticket_for(client, login)

    with pytest.raises(NotFound):
        queries.client_thread(other.pk, view.id)


def test_staff_see_only_the_queues_of_their_roles_admin_and_auditor_see_all():
    client, login = client_with_login()
    agent = staff(Role.SUPPORT)
    in_support = ticket_for(client, login)
    in_finance = ticket_for(client, login, subject="Payout")
    services.escalate(in_finance.id, to_queue="finance", reason="PSP", by=agent)
    finance, dealer = staff(Role.FINANCE), staff(Role.DEALING)
    admin, auditor = staff(Role.ADMIN), staff(Role.AUDITOR)

    def ids(user: object) -> set[object]:
        return {t.id for t in queries.staff_tickets(user)}

    assert ids(agent) == {in_support.id}
    assert ids(finance) == {in_finance.id}
    assert ids(dealer) == set()
    assert ids(admin) == ids(auditor) == {in_support.id, in_finance.id}
    with pytest.raises(NotFound):
        queries.staff_ticket(finance, in_support.id)
    assert queries.staff_ticket(auditor, in_support.id).can_work is False
    assert queries.staff_ticket(admin, in_support.id).can_work is True


def test_the_auditor_reads_but_cannot_change_anything():
    client, login = client_with_login()
    auditor = staff(Role.AUDITOR)
    view = ticket_for(client, login)

    for attempt in (
        lambda: services.staff_reply(view.id, body="x", by=auditor),
        lambda: services.add_note(view.id, body="x", by=auditor),
        lambda: services.change_status(view.id, "open", by=auditor),
        lambda: services.tag_ticket(view.id, add=["x"], by=auditor),
        lambda: services.set_priority(view.id, "high", by=auditor),
    ):
        with pytest.raises(PermissionDenied):
            attempt()
    assert queries.staff_ticket(auditor, view.id).ticket.status == "new"


def test_queue_counts_cover_only_readable_queues():
    client, login = client_with_login()
    ticket_for(client, login)
    ticket_for(client, login)

    support_counts = {q.queue: q for q in queries.queue_counts(staff(Role.SUPPORT))}
    finance_counts = {q.queue: q for q in queries.queue_counts(staff(Role.FINANCE))}

    assert set(support_counts) == {"support"} and support_counts["support"].open == 2
    assert support_counts["support"].unassigned == 2
    assert set(finance_counts) == {"finance"} and finance_counts["finance"].open == 0
