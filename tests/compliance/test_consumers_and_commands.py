"""Event consumers (timeline projector, onboarding screening, payment monitoring) and commands."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, date, datetime

import pytest
from django.core.management import call_command

from brokerdesk.clients import queries as client_queries
from brokerdesk.clients.consumers import project_timeline
from brokerdesk.compliance import queries, services
from brokerdesk.compliance.consumers import monitor_payments, screen_new_clients
from brokerdesk.core.bus.base import Message
from tests.clients.factories import individual, user
from tests.compliance.test_screening import ALT, SDN

pytestmark = pytest.mark.django_db


def message(type_: str, stream: str, **payload) -> Message:
    return Message(
        event_id=str(uuid.uuid4()),
        stream=stream,
        type=type_,
        payload={k: str(v) if isinstance(v, uuid.UUID) else v for k, v in payload.items()},
        occurred_at=datetime(2026, 5, 1, 10, tzinfo=UTC).isoformat(),
    )


def test_other_modules_events_land_on_the_timeline_once():
    alice = individual()
    deposit = message(
        "deposit.confirmed", "payments", client_id=alice.pk, amount=100_000, currency="USD"
    )

    project_timeline([deposit, deposit, message("deposit.confirmed", "payments", amount=1)])

    entries = [e for e in client_queries.timeline(alice.pk) if e.kind == "deposit.confirmed"]
    assert len(entries) == 1
    assert entries[0].summary == "deposit.confirmed - 100000 USD (minor units)"


def test_a_newly_registered_client_is_screened():
    services.load_sanctions_list(
        "ofac_sdn", fmt="ofac_csv", content=SDN, alt_content=ALT, by="system:test"
    )
    client = individual(
        first_name="Dimitrios", last_name="Karvelos", date_of_birth=date(1971, 1, 12)
    )

    screen_new_clients([message("client.registered", "clients", client_id=client.pk)])

    assert len(queries.hits_of(client.pk)) == 1


def test_confirmed_deposits_feed_the_monitoring_rules_once():
    alice = individual()
    big = message(
        "deposit.confirmed", "payments", client_id=alice.pk, amount=2_000_000, currency="EUR"
    )

    monitor_payments([big, big])

    assert [a.rule for a in queries.alerts_of(alice.pk)] == ["large_deposit"]


def test_the_daily_command_runs_every_job_and_rule_sets_load_idempotently():
    individual()
    out = io.StringIO()
    call_command("load_rule_sets", stdout=out)
    assert "cysec v1" in out.getvalue()

    call_command("compliance_daily", stdout=out)
    assert "rescreened=1" in out.getvalue()


def test_officers_work_the_screening_queue_and_cases_through_the_api(client):
    services.load_sanctions_list(
        "ofac_sdn", fmt="ofac_csv", content=SDN, alt_content=ALT, by="system:test"
    )
    suspect = individual(
        first_name="Adaeze", last_name="Okonkwo Bell", date_of_birth=date(1980, 2, 2)
    )
    client.force_login(user("compliance_officer"))

    [hit] = client.post(f"/api/v1/compliance/clients/{suspect.pk}/screen").json()
    assert [h["id"] for h in client.get("/api/v1/compliance/screening/queue").json()] == [hit["id"]]
    [case] = client.get("/api/v1/compliance/cases?status=open").json()
    assert case["kind"] == "sanctions"
    noted = client.post(
        f"/api/v1/compliance/cases/{case['id']}/notes",
        {"text": "Checked date of birth"},
        content_type="application/json",
    )
    assert noted.status_code == 204
    resolved = client.post(
        f"/api/v1/compliance/screening/hits/{hit['id']}/resolve",
        {"confirmed": False, "note": "born 1994, different person"},
        content_type="application/json",
    )
    assert resolved.status_code == 200, resolved.json()
    assert resolved.json()["status"] == "dismissed"
    assert client.get("/api/v1/compliance/cases?status=open").json() == []

    client.force_login(user("support"))
    assert client.get("/api/v1/compliance/screening/queue").status_code == 403
