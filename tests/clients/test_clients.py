"""Clients: registration, contact-data rules, logins, segments, tags and the timeline."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest

from brokerdesk.clients import queries, services
from brokerdesk.clients.models import Client, ClientTimelineEntry, PlatformLogin
from brokerdesk.core import clock
from brokerdesk.core.errors import Conflict, NotFound, ValidationError
from brokerdesk.core.models import AuditEntry, OutboxEvent
from tests.clients.factories import corporate, individual

pytestmark = pytest.mark.django_db


def test_registering_an_individual_stores_the_client_and_emits_client_registered():
    client = individual(email="  Maria@Example.COM ", phone="22 123456")

    assert uuid.UUID(str(client.pk)).version == 7
    stored = queries.get_client(client.pk)
    assert stored.email == "maria@example.com"
    assert stored.phone == "+35722123456"  # national number read in the client's country
    assert stored.kind == "individual"
    event = OutboxEvent.objects.get(type="client.registered")
    assert event.aggregate_id == str(client.pk)
    assert event.payload["jurisdiction"] == "cysec"
    assert AuditEntry.objects.filter(action="client.register", object_id=str(client.pk)).exists()
    assert [t.kind for t in queries.timeline(client.pk)] == ["client.registered"]


def test_registering_a_company_needs_its_name_and_registration_number():
    company = corporate()
    assert queries.get_client(company.pk).kind == "corporate"

    with pytest.raises(ValidationError) as error:
        corporate(company_name=" ")
    assert (error.value.code, error.value.field) == ("required", "company_name")


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"email": "not-an-address"}, "invalid_email", "email"),
        ({"country": "XX"}, "invalid_country", "country"),
        ({"phone": "12"}, "invalid_phone", "phone"),
        ({"phone": "+357 99"}, "invalid_phone", "phone"),
        ({"date_of_birth": None}, "required", "date_of_birth"),
        ({"date_of_birth": date(2090, 1, 1)}, "date_in_future", "date_of_birth"),
        ({"date_of_birth": date(1880, 1, 1)}, "implausible_date", "date_of_birth"),
        ({"jurisdiction": "atlantis"}, "unknown_jurisdiction", "jurisdiction"),
        ({"country": "US"}, "country_not_accepted", "country"),
        ({"first_name": ""}, "required", "first_name"),
        ({"nationality": "ZZ"}, "invalid_country", "nationality"),
    ],
)
def test_bad_contact_data_is_refused_naming_the_field_and_nothing_is_written(
    overrides, code, field
):
    with pytest.raises(ValidationError) as error:
        individual(**overrides)

    assert (error.value.code, error.value.field) == (code, field)
    assert Client.objects.count() == 0
    assert OutboxEvent.objects.filter(type="client.registered").count() == 0


def test_a_minor_is_refused_and_an_eighteen_year_old_is_accepted():
    with clock.frozen(datetime(2026, 6, 15, 12, tzinfo=UTC)):
        with pytest.raises(ValidationError) as error:
            individual(date_of_birth=date(2008, 6, 16))  # 18 tomorrow
        assert error.value.code == "under_age"
        assert error.value.field == "date_of_birth"

        adult = individual(date_of_birth=date(2008, 6, 15))  # 18 today
    assert adult.date_of_birth == date(2008, 6, 15)


def test_the_same_email_cannot_register_twice_whatever_its_case():
    individual(email="trader@example.com")

    with pytest.raises(Conflict) as error:
        individual(email="TRADER@example.com")
    assert (error.value.code, error.value.field) == ("email_taken", "email")


def test_one_client_links_many_logins_but_a_login_belongs_to_one_client():
    alice, bob = individual(), individual()
    account_id = uuid.uuid4()
    services.link_platform_login(
        alice.pk,
        platform="mt5",
        server="Broker-Live",
        login=5001,
        currency="USD",
        is_live=True,
        trading_account_id=account_id,
        by="system:test",
    )
    services.link_platform_login(
        alice.pk,
        platform="mt5",
        server="Broker-Demo",
        login=5001,
        currency="EUR",
        is_live=False,
        by="system:test",
    )

    assert [(x.server, x.is_live) for x in queries.logins_of(alice.pk)] == [
        ("Broker-Live", True),
        ("Broker-Demo", False),
    ]
    owner = queries.client_for_login("Broker-Live", 5001)
    assert owner is not None and owner.client_id == alice.pk
    assert owner.trading_account_id == account_id
    with pytest.raises(Conflict) as error:
        services.link_platform_login(
            bob.pk,
            platform="mt5",
            server="Broker-Live",
            login=5001,
            currency="USD",
            is_live=True,
            by="system:test",
        )
    assert error.value.code == "login_taken"


def test_linking_the_same_login_again_changes_nothing():
    alice = individual()
    link = {
        "platform": "mt4",
        "server": "Live-2",
        "login": 77,
        "currency": "USD",
        "is_live": True,
        "by": "system:test",
    }
    first = services.link_platform_login(alice.pk, **link)
    again = services.link_platform_login(alice.pk, **link)

    assert first.pk == again.pk
    assert PlatformLogin.objects.count() == 1
    assert OutboxEvent.objects.filter(type="client.login_linked").count() == 1


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"platform": "mt9"}, "unknown_platform", "platform"),
        ({"login": -3}, "invalid_login", "login"),
        ({"currency": "XYZ"}, "unknown_currency", "currency"),
    ],
)
def test_bad_login_data_is_refused(change, code, field):
    alice = individual()
    link = {
        "platform": "mt5",
        "server": "Live",
        "login": 1,
        "currency": "USD",
        "is_live": True,
        "by": "system:test",
    }
    with pytest.raises(ValidationError) as error:
        services.link_platform_login(alice.pk, **{**link, **change})
    assert (error.value.code, error.value.field) == (code, field)


def test_changing_contact_data_is_audited_with_before_and_after():
    alice = individual(phone="+35722123456")

    services.update_contact(
        alice.pk,
        {"phone": "+44 20 7946 0958", "country": "GB", "city": "London"},
        by="user:7",
        reason="client moved",
    )

    view = queries.get_client(alice.pk)
    assert (view.phone, view.country) == ("+442079460958", "GB")
    entry = AuditEntry.objects.get(action="client.update_contact")
    assert entry.before["country"] == "CY"
    assert entry.after["city"] == "London"
    assert entry.reason == "client moved"
    assert queries.timeline(alice.pk)[0].kind == "client.updated"


def test_a_contact_change_that_breaks_a_rule_changes_nothing():
    alice = individual()
    with pytest.raises(ValidationError) as error:
        services.update_contact(
            alice.pk, {"city": "Paphos", "country": "US"}, by="user:7", reason="x"
        )
    assert error.value.field == "country"
    assert queries.get_client(alice.pk).country == "CY"
    assert not AuditEntry.objects.filter(action="client.update_contact").exists()

    with pytest.raises(ValidationError) as error:
        services.update_contact(alice.pk, {"jurisdiction": "fsa-sc"}, by="user:7", reason="x")
    assert error.value.code == "not_updatable"


def test_segments_and_tags_are_set_and_shown():
    alice = individual()
    services.define_segment("vip", "VIP")
    services.define_segment("retail", "Retail")

    services.set_segments(alice.pk, ["vip"], by="user:1", reason="deposits above 50k")
    services.tag_client(alice.pk, add=["high-value", "arabic_speaker"], by="user:1")
    services.tag_client(alice.pk, remove=["arabic_speaker"], by="user:1")

    view = queries.get_client(alice.pk)
    assert view.segments == ("vip",)
    assert view.tags == ("high-value",)
    with pytest.raises(ValidationError) as error:
        services.set_segments(alice.pk, ["platinum"], by="user:1", reason="x")
    assert error.value.code == "unknown_segment"
    with pytest.raises(ValidationError):
        services.tag_client(alice.pk, add=["no spaces allowed"], by="user:1")


def test_timeline_lists_entries_newest_first_and_a_replayed_event_is_recorded_once():
    alice = individual()
    event_id = uuid.uuid4()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    services.record_timeline(
        alice.pk, kind="deposit.confirmed", summary="Deposit 100 USD", occurred_at=t0
    )
    later = datetime(2026, 2, 1, tzinfo=UTC)
    for _ in range(2):  # the same event delivered twice
        services.record_timeline(
            alice.pk,
            kind="trading.account_opened",
            summary="MT5 account opened",
            occurred_at=later,
            source_event_id=event_id,
        )

    kinds = [e.kind for e in queries.timeline(alice.pk)]
    assert kinds[0] == "client.registered"  # registered "now", after both
    assert kinds[1:] == ["trading.account_opened", "deposit.confirmed"]
    assert ClientTimelineEntry.objects.filter(source_event_id=event_id).count() == 1


def test_unknown_client_is_not_found():
    with pytest.raises(NotFound):
        queries.get_client(uuid.uuid4())
    with pytest.raises(NotFound):
        queries.get_client("not-a-uuid")
    with pytest.raises(NotFound):
        services.record_timeline(uuid.uuid4(), kind="x", summary="y")


def test_ending_the_relationship_is_recorded_once():
    alice = individual()
    services.end_relationship(alice.pk, by="user:3", reason="client request")

    assert queries.get_client(alice.pk).relationship_ended_at is not None
    with pytest.raises(Conflict):
        services.end_relationship(alice.pk, by="user:3", reason="again")
