"""Races provoked on purpose: repeated requests and deliveries arriving together stay single."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from brokerdesk.core.errors import IllegalTransition
from brokerdesk.core.models import OutboxEvent
from brokerdesk.staff.roles import Role
from brokerdesk.support import services
from brokerdesk.support.models import Ticket, TicketChange, TicketMessage
from tests.support.conftest import client_with_login, staff, ticket_for

pytestmark = pytest.mark.django_db(transaction=True)

RAW = (
    b"From: racer@example.org\r\nSubject: Same mail twice\r\n"
    b"Message-ID: <race-1@example.org>\r\nContent-Type: text/plain\r\n\r\nHello\r\n"
)


def race(workers: int, job: Callable[[int], Any]) -> list[Any]:
    """Run ``job(i)`` in ``workers`` threads released together; return results or errors."""
    barrier = threading.Barrier(workers)
    results: list[Any] = [None] * workers

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = job(i)
        except Exception as exc:  # collected and asserted on by the test
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_a_double_submitted_portal_form_opens_one_ticket():
    client, login = client_with_login()

    results = race(5, lambda i: ticket_for(client, login, idempotency_key="form-token-1").id)

    assert all(not isinstance(r, Exception) for r in results), results
    assert len(set(results)) == 1 and Ticket.objects.count() == 1
    assert OutboxEvent.objects.filter(type="ticket.opened").count() == 1


def test_the_same_e_mail_delivered_by_two_relays_at_once_is_taken_in_once():
    results = race(4, lambda i: services.ingest_email(RAW))

    assert all(not isinstance(r, Exception) for r in results), results
    assert len({r.ticket.id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert Ticket.objects.count() == 1 and TicketMessage.objects.count() == 1


def test_two_agents_resolving_the_same_ticket_resolve_it_once():
    client, login = client_with_login()
    view = ticket_for(client, login)
    agents = [staff(Role.SUPPORT) for _ in range(4)]

    results = race(4, lambda i: services.change_status(view.id, "resolved", by=agents[i]))

    done = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, IllegalTransition)]
    assert len(done) == 1 and len(refused) == 3, results
    assert TicketChange.objects.filter(ticket_id=view.id, to_value="resolved").count() == 1
