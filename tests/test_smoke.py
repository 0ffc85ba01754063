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
