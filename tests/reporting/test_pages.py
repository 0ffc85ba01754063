"""Back-office Reports and Operations pages, their role refusals, the API and /metrics."""

from __future__ import annotations

import io

import pytest
from django.test import Client
from openpyxl import load_workbook

from brokerdesk.reporting import operations
from brokerdesk.reporting.models import ProjectionState
from tests.clients.factories import individual, user
from tests.partners.conftest import verified_client
from tests.reporting.conftest import DAY1, DAY2, open_account, outbox_messages, project, trade

pytestmark = pytest.mark.django_db

SPAN = {"start": DAY1.date().isoformat(), "end": DAY2.date().isoformat()}


def signed_in(*roles: str) -> Client:
    http = Client()
    http.force_login(user(*roles))
    return http


@pytest.fixture
def traded() -> int:
    """One client's closed deal on DAY1, projected."""
    login = open_account(verified_client())
    trade(login, at=DAY1, volume=30_000, profit=4_200)
    project(outbox_messages())
    return login


@pytest.mark.parametrize("role", ["finance", "auditor", "admin"])
def test_finance_auditor_and_admin_see_every_report(role, traded):
    http = signed_in(role)

    index = http.get("/backoffice/reports/")
    page = http.get("/backoffice/reports/client-profitability/", SPAN)

    assert index.status_code == 200
    assert b"AML statistics" in index.content and b"Client profitability" in index.content
    assert page.status_code == 200 and b'data-testid="report-table"' in page.content
    assert b"42.00" in page.content and b"3.00" in page.content  # profit, lots


def test_a_partner_manager_sees_the_ib_reports_only(traded):
    http = signed_in("partner_manager")

    index = http.get("/backoffice/reports/")
    ib_report = http.get("/backoffice/reports/ib-daily/", SPAN)
    refused = http.get("/backoffice/reports/payment-methods/", SPAN)

    assert b"IB performance" in index.content and b"AML statistics" not in index.content
    assert ib_report.status_code == 200 and b"3.00" in ib_report.content
    assert b'id="report-chart"' in ib_report.content and b'"values": ["3"]' in ib_report.content
    assert refused.status_code == 403


@pytest.mark.parametrize("role", ["support", "compliance_officer", "dealing"])
def test_other_roles_are_refused_the_reports(role):
    assert signed_in(role).get("/backoffice/reports/ib-daily/", SPAN).status_code == 403


def test_a_client_is_refused_and_an_anonymous_visitor_sent_to_sign_in():
    anonymous = Client().get("/backoffice/reports/")
    client_user = user()
    individual(user=client_user)
    http = Client()
    http.force_login(client_user)

    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    assert http.get("/backoffice/reports/").status_code == 403


def test_reports_download_as_csv_and_xlsx(traded):
    http = signed_in("finance")

    as_csv = http.get("/backoffice/reports/ib-daily/", {**SPAN, "format": "csv"})
    as_xlsx = http.get("/backoffice/reports/ib-daily/", {**SPAN, "format": "xlsx"})

    assert as_csv["Content-Type"].startswith("text/csv")
    assert 'filename="ib-daily_2026-03-02_2026-03-03.csv"' in as_csv["Content-Disposition"]
    body = as_csv.content.decode().splitlines()
    assert body[0].startswith("Day,IB,Currency,Deposits") and ",3," in body[1]
    sheet = load_workbook(io.BytesIO(as_xlsx.content)).active
    assert sheet.cell(row=2, column=1).value == "2026-03-02"


def test_a_reversed_range_shows_the_error_on_the_end_date():
    http = signed_in("finance")
    response = http.get(
        "/backoffice/reports/ib-daily/", {"start": "2026-03-05", "end": "2026-03-01"}
    )
    assert response.status_code == 400
    assert b"The end date must be on or after the start date." in response.content


@pytest.mark.parametrize("role", ["admin", "auditor", "dealing"])
def test_the_operations_page_shows_streams_freshness_and_slow_statements(role, traded):
    operations.SLOW_LOG.clear()
    operations.SLOW_LOG.record("SELECT * FROM reporting_ib_day WHERE day = 5", 812.5, "test")
    project(outbox_messages())  # delivered again: every fact is rejected as already applied

    page = signed_in(role).get("/backoffice/operations/")

    assert page.status_code == 200
    assert b'data-testid="projections"' in page.content and b"reporting.trading" in page.content
    assert b'data-testid="streams"' in page.content
    assert b"reporting_ib_day WHERE day = ?" in page.content and b"812.5" in page.content
    assert b"kind=reporting_fact" in page.content


@pytest.mark.parametrize("role", ["finance", "support", "partner_manager"])
def test_other_roles_are_refused_the_operations_page(role):
    assert signed_in(role).get("/backoffice/operations/").status_code == 403


def test_metrics_expose_projection_freshness_and_slow_statements(traded):
    state = ProjectionState.objects.get(name="trading")
    operations.SLOW_LOG.record("SELECT 1", 999.0, "test")

    body = Client().get("/metrics").content.decode()

    assert f'brokerdesk_projection_events{{projection="trading"}} {float(state.events)}' in body
    assert 'brokerdesk_projection_idle_seconds{projection="trading"}' in body
    assert 'brokerdesk_slow_queries_total{vendor="test"}' in body


def test_the_slow_statement_timer_records_statements_over_the_threshold(settings):
    from django.db import connection

    operations.SLOW_LOG.clear()
    settings.REPORTING_SLOW_QUERY_MS = 0
    operations.install_on_connection(None, connection)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 42")
    settings.REPORTING_SLOW_QUERY_MS = 10_000
    with connection.cursor() as cursor:
        cursor.execute("SELECT 43")

    shapes = [q.sql for q in operations.SLOW_LOG.slowest(50)]
    assert "SELECT ?" in shapes and all("43" not in s for s in shapes)


def test_the_reports_api_returns_rows_and_refuses_other_roles(traded):
    finance = signed_in("finance").get("/api/v1/reporting/reports/client-profitability", SPAN)
    manager = signed_in("partner_manager")

    assert finance.status_code == 200 and finance.json()["rows"][0]["volume"] == 30_000
    assert manager.get("/api/v1/reporting/reports/ib-daily", SPAN).status_code == 200
    assert manager.get("/api/v1/reporting/reports/aml-statistics", SPAN).status_code == 403
    assert signed_in("support").get("/api/v1/reporting/reports/ib-daily", SPAN).status_code == 403
    assert (
        signed_in("dealing").get("/api/v1/reporting/operations/projections").json()[1]["name"]
        == "trading"
    )


def test_the_account_summary_api_answers_the_owner_only(traded):
    owner_user, other_user = user(), user()
    owner = individual(user=owner_user)
    individual(user=other_user)
    login = open_account(owner.pk)
    trade(login, at=DAY1, volume=10_000, profit=2_500)
    mine, theirs = Client(), Client()
    mine.force_login(owner_user)
    theirs.force_login(other_user)

    answer = mine.get(f"/api/v1/trading/accounts/{login}/summary")
    hidden = theirs.get(f"/api/v1/trading/accounts/{login}/summary")
    anonymous = Client().get(f"/api/v1/trading/accounts/{login}/summary")

    assert answer.status_code == 200
    assert answer.json()["login"] == login and answer.json()["currency"] == "USD"
    assert answer.json()["balance"] == 2_500 - 700 and answer.json()["deals"] == 2
    assert hidden.status_code == 404 and hidden.json()["code"] == "account_not_found"
    assert anonymous.status_code == 401
