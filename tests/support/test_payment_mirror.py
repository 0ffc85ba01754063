"""Payment status mirrored into linked tickets, through the real pipeline (outbox → relay → bus
→ the registered consumer), once per event; and ticket events on the client's timeline."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from brokerdesk.clients import queries as client_queries
from brokerdesk.core import clock
from brokerdesk.core.bus.base import Message
from brokerdesk.core.bus.outbox import OutboxBus
from brokerdesk.core.consumers import ConsumerRunner, autodiscover
from brokerdesk.core.events import emit
from brokerdesk.core.ids import new_id
from brokerdesk.core.relay import relay_all
from brokerdesk.payments.events import WithdrawalApproved, WithdrawalPaid, WithdrawalRequested
from brokerdesk.staff.roles import Role
from brokerdesk.support import queries
from brokerdesk.support.consumers import mirror_payments
from brokerdesk.support.models import TicketLink, TicketMessage
from tests.support.conftest import T0, client_with_login, staff, ticket_for


def _withdrawal_event(cls: type, client_id: object, payment_id: object, **kw: object) -> object:
    return cls(
        payment_id=payment_id,
        client_id=client_id,
        reference="WD-7Q2K9",
        amount=125_050,
        currency="USD",
        actor="system:test",
        **kw,
    )


def _message(event: object, *, at: str) -> Message:
    return Message(
        event_id=str(new_id()),
        stream="payments",
        type=event.type,  # type: ignore[attr-defined]
        payload=event.payload(),  # type: ignore[attr-defined]
        occurred_at=at,
    )


@pytest.mark.django_db
def test_a_withdrawal_event_becomes_a_system_message_on_the_linked_ticket_once():
    client, login = client_with_login()
    payment_id = uuid4()
    linked = ticket_for(client, login, links={"withdrawal": str(payment_id)})
    unlinked = ticket_for(client, login, subject="Other")
    bus = OutboxBus(poll_interval_ms=20)
    runner = ConsumerRunner(bus, autodiscover()["support.mirror_payments"])

    emit(_withdrawal_event(WithdrawalApproved, client.pk, payment_id))
    relay_all(bus)
    first = runner.drain()
    event_id = (
        TicketMessage.objects.get(ticket_id=linked.id, kind="system").dedupe_key or ""
    ).split(":")[1]
    redelivered = Message(
        event_id=event_id,
        stream="payments",
        type="withdrawal.approved",
        payload=_withdrawal_event(WithdrawalApproved, client.pk, payment_id).payload(),
        occurred_at=clock.now().isoformat(),
    )
    mirror_payments([redelivered])  # the bus delivers it again, past the processed-id check

    assert first.processed == 1 and first.dead_lettered == 0
    system = TicketMessage.objects.filter(ticket_id=linked.id, kind="system")
    assert system.count() == 1
    assert not TicketMessage.objects.filter(ticket_id=unlinked.id, kind="system").exists()
    thread = queries.client_thread(client.pk, linked.id)
    assert thread.messages[-1].kind == "system"
    assert thread.messages[-1].text == "Withdrawal WD-7Q2K9 of 1,250.50 USD was approved."
    assert TicketLink.objects.get(ticket_id=linked.id).last_status == "approved"


@pytest.mark.django_db
def test_payments_are_matched_by_reference_too_and_a_late_event_does_not_roll_back_the_status():
    client, login = client_with_login()
    payment_id = uuid4()
    view = ticket_for(client, login, links={"withdrawal": "WD-7Q2K9"})
    paid = _withdrawal_event(WithdrawalPaid, client.pk, payment_id, provider_id="psp-1")
    requested = _withdrawal_event(WithdrawalRequested, client.pk, payment_id)

    mirror_payments([_message(paid, at=(T0 + timedelta(hours=2)).isoformat())])
    mirror_payments([_message(requested, at=T0.isoformat())])  # arrives late

    link = TicketLink.objects.get(ticket_id=view.id)
    assert link.last_status == "paid"
    texts = [m.text for m in queries.client_thread(client.pk, view.id).messages]
    assert "Withdrawal WD-7Q2K9 of 1,250.50 USD was paid out." in texts
    assert any("being reviewed" in t for t in texts)
    # the thread shows them in the order they happened, not the order they arrived
    assert texts.index(next(t for t in texts if "being reviewed" in t)) < texts.index(
        "Withdrawal WD-7Q2K9 of 1,250.50 USD was paid out."
    )


@pytest.mark.django_db
def test_other_payment_events_and_unlinked_payments_change_nothing():
    client, login = client_with_login()
    ticket_for(client, login, links={"deposit": "DP-1"})
    before = TicketMessage.objects.count()

    mirror_payments(
        [
            Message(str(new_id()), "payments", "payments.rate_updated", {}, T0.isoformat()),
            _message(_withdrawal_event(WithdrawalPaid, client.pk, uuid4()), at=T0.isoformat()),
        ]
    )

    assert TicketMessage.objects.count() == before


@pytest.mark.django_db
def test_ticket_events_appear_on_the_clients_timeline():
    client, login = client_with_login()
    agent = staff(Role.SUPPORT)
    view = ticket_for(client, login)
    from brokerdesk.support import services

    services.staff_reply(view.id, body="On it.", by=agent)
    bus = OutboxBus(poll_interval_ms=20)
    relay_all(bus)
    ConsumerRunner(bus, autodiscover()["clients.timeline"]).drain()

    kinds = [item.kind for item in client_queries.timeline(client.pk)]
    assert "ticket.opened" in kinds and "ticket.updated" in kinds
