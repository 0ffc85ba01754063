"""SLA targets, breach flags against a frozen clock, attainment by queue, and the FCR figure."""

from __future__ import annotations

from datetime import timedelta

import pytest

from brokerdesk.core import clock
from brokerdesk.core.errors import PermissionDenied, ValidationError
from brokerdesk.staff.roles import Role
from brokerdesk.support import queries, services
from tests.support.conftest import T0, client_with_login, staff, ticket_for

pytestmark = pytest.mark.django_db


def test_the_targets_are_data_and_an_admin_can_change_them():
    admin = staff(Role.ADMIN)

    services.set_sla_target("high", first_response_minutes=45, resolution_minutes=600, by=admin)

    assert queries.sla_target("high").first_response_minutes == 45
    with pytest.raises(PermissionDenied):
        services.set_sla_target(
            "high", first_response_minutes=1, resolution_minutes=2, by=staff(Role.SUPPORT)
        )
    with pytest.raises(ValidationError) as caught:
        services.set_sla_target("high", first_response_minutes=60, resolution_minutes=30, by=admin)
    assert caught.value.field == "resolution_minutes"


def test_first_response_breach_flips_exactly_after_the_target():
    services.set_sla_target(
        "normal", first_response_minutes=60, resolution_minutes=480, by="system:test"
    )
    client, login = client_with_login()
    with clock.frozen(T0) as c:
        view = ticket_for(client, login)
        assert view.first_response_due == T0 + timedelta(minutes=60)

        c.advance(timedelta(minutes=60))
        at_due = queries.tickets_of(client.pk)[0]
        c.advance(timedelta(seconds=1))
        late = queries.tickets_of(client.pk)[0]

    assert not at_due.first_response_breached and at_due.sla_badge == "due_soon"
    assert late.first_response_breached and late.sla_badge == "breached"
    assert not late.resolution_breached


def test_a_reply_in_time_meets_the_first_response_target_for_good():
    services.set_sla_target(
        "normal", first_response_minutes=60, resolution_minutes=480, by="system:test"
    )
    client, login = client_with_login()
    agent = staff(Role.SUPPORT)
    with clock.frozen(T0) as c:
        view = ticket_for(client, login)
        c.advance(timedelta(minutes=59))
        services.staff_reply(view.id, body="Looking.", by=agent)
        c.advance(timedelta(hours=3))
        later = queries.tickets_of(client.pk)[0]
        c.advance(timedelta(hours=5))
        overdue = queries.tickets_of(client.pk)[0]

    assert not later.first_response_breached and later.sla_badge == "on_track"
    assert not overdue.first_response_breached and overdue.resolution_breached


def test_raising_the_priority_recomputes_the_deadlines_from_the_opening_time():
    client, login = client_with_login()
    agent = staff(Role.SUPPORT)
    with clock.frozen(T0) as c:
        view = ticket_for(client, login)
        c.advance(timedelta(hours=1))
        after = services.set_priority(view.id, "urgent", by=agent, reason="VIP")

    urgent = queries.sla_target("urgent")
    assert after.first_response_due == T0 + timedelta(minutes=urgent.first_response_minutes)
    assert after.first_response_breached  # 60 minutes in, against a 30-minute target


def test_breached_filter_and_queue_counts_follow_the_clock():
    services.set_sla_target(
        "normal", first_response_minutes=30, resolution_minutes=240, by="system:test"
    )
    client, login = client_with_login()
    agent = staff(Role.SUPPORT)
    with clock.frozen(T0) as c:
        late = ticket_for(client, login, subject="Late")
        c.advance(timedelta(minutes=20))
        fresh = ticket_for(client, login, subject="Fresh")
        c.advance(timedelta(minutes=15))
        breached = queries.staff_tickets(agent, queries.TicketFilters(breached=True))
        counts = queries.queue_counts(agent)[0]

    assert [t.id for t in breached] == [late.id]
    assert fresh.id not in {t.id for t in breached}
    assert counts.breached == 1 and counts.open == 2


def test_sla_attainment_by_queue():
    services.set_sla_target(
        "normal", first_response_minutes=60, resolution_minutes=600, by="system:test"
    )
    client, login = client_with_login()
    agent, finance = staff(Role.SUPPORT), staff(Role.FINANCE)
    with clock.frozen(T0) as c:
        quick = ticket_for(client, login, subject="quick")
        slow = ticket_for(client, login, subject="slow")
        waiting = ticket_for(client, login, subject="waiting")
        moved = ticket_for(client, login, subject="moved")
        services.escalate(moved.id, to_queue="finance", reason="payout", by=agent)
        c.advance(timedelta(minutes=10))
        services.staff_reply(quick.id, body="ok", by=agent, then_status="resolved")
        services.staff_reply(moved.id, body="ok", by=finance)
        c.advance(timedelta(minutes=80))
        services.staff_reply(slow.id, body="sorry", by=agent)
        rows = {r.queue: r for r in queries.sla_attainment()}

    support = rows["support"]
    assert support.tickets == 3
    # quick and slow were answered, waiting is past due unanswered: 1 of 3 in time
    assert (support.first_response_met, support.first_response_measured) == (1, 3)
    assert support.first_response_rate == pytest.approx(1 / 3, abs=1e-4)
    # only quick is resolved; nothing else has reached its resolution deadline yet
    assert (support.resolution_met, support.resolution_measured) == (1, 1)
    assert (rows["finance"].first_response_met, rows["finance"].first_response_measured) == (1, 1)
    assert rows["dealing"].tickets == 0 and rows["dealing"].first_response_rate is None
    del waiting


def test_first_contact_resolution_counts_single_reply_resolutions_never_reopened():
    client, login = client_with_login()
    agent = staff(Role.SUPPORT)
    one = ticket_for(client, login, category="kyc")
    services.staff_reply(one.id, body="Approved.", by=agent, then_status="resolved")
    two = ticket_for(client, login, category="withdrawals")
    services.staff_reply(two.id, body="Send a statement.", by=agent, then_status="pending_client")
    services.client_reply(two.id, client_id=client.pk, body="Here.", by=login)
    services.staff_reply(two.id, body="Thanks, done.", by=agent, then_status="resolved")
    three = ticket_for(client, login, category="kyc")
    services.staff_reply(three.id, body="Done.", by=agent, then_status="resolved")
    services.client_reply(three.id, client_id=client.pk, body="No it is not.", by=login)
    services.change_status(three.id, "resolved", by=agent)
    ticket_for(client, login, category="kyc")  # still open: not counted

    overall = queries.first_contact_resolution()
    kyc = queries.first_contact_resolution(category="kyc")
    by_category = {f.category: f for f in queries.fcr_by_category()}

    assert (overall.first_contact, overall.resolved) == (1, 3)
    assert overall.rate == pytest.approx(1 / 3, abs=1e-4)
    assert (kyc.first_contact, kyc.resolved) == (1, 2)
    assert (by_category["withdrawals"].first_contact, by_category["withdrawals"].resolved) == (0, 1)
    assert by_category["deposits"].rate is None
