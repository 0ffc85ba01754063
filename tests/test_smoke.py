"""The project starts: settings load, URLs resolve, the health check answers."""

import pytest


@pytest.mark.django_db
def test_health_answers_with_the_database_vendor(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_metrics_endpoint_serves_prometheus_text(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert b"python_info" in response.content


@pytest.mark.django_db
def test_demo_seeds_once_and_leaves_a_clean_ledger(capsys):
    from django.core.management import call_command

    from brokerdesk.ledger.models import Transfer
    from brokerdesk.ledger.queries import replay_ledger

    call_command("demo", "--no-serve")
    first = Transfer.objects.count()
    call_command("demo", "--no-serve")

    assert first > 0 and Transfer.objects.count() == first
    assert replay_ledger().clean
    assert "demo data: ledger" in capsys.readouterr().out


@pytest.mark.django_db
def test_back_office_lists_ledger_transfers_for_staff(admin_client):
    from django.core.management import call_command

    call_command("demo", "--no-serve")
    response = admin_client.get("/backoffice/admin/ledger/transfer/")
    assert response.status_code == 200
    assert b"deposit" in response.content
