"""The demo data: a handful of tickets in different states, seeded once however often it runs."""

from __future__ import annotations

import pytest

from brokerdesk.portal import demo as portal_demo
from brokerdesk.support import demo
from brokerdesk.support.models import Ticket

pytestmark = pytest.mark.django_db


def test_the_demo_seeds_tickets_in_different_states_once():
    portal_demo.seed()

    first = demo.seed()
    second = demo.seed()

    assert first.startswith("5 demo tickets") and second.startswith("0 demo tickets")
    assert Ticket.objects.count() == 5
    statuses = set(Ticket.objects.values_list("status", flat=True))
    assert {"new", "open", "pending_client", "resolved"} <= statuses
    assert Ticket.objects.filter(queue="finance").exists()
    assert Ticket.objects.filter(client_id__isnull=True, source="email").count() == 1
