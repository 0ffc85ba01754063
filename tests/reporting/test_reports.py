"""The reports read the rollups; CSV, XLSX and PDF outputs parse back with the same figures."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta
from decimal import Decimal

import pytest
from openpyxl import load_workbook

from brokerdesk.compliance.events import AmlAlertRaised
from brokerdesk.core import clock
from brokerdesk.core.errors import ValidationError
from brokerdesk.core.events import emit
from brokerdesk.core.ids import new_id
from brokerdesk.partners import attribution
from brokerdesk.reporting import exports, queries
from brokerdesk.reporting.statements import statement_csv, statement_pdf
from tests.partners.conftest import make_ib
from tests.payments.conftest import funded, new_client
from tests.reporting.conftest import DAY1, DAY2, open_account, outbox_messages, project, trade

pytestmark = pytest.mark.django_db

START, END = DAY1.date(), DAY2.date()


@pytest.fixture
def activity(local_psp):
    """An IB with one client who deposited and traded; a direct client who traded at a loss."""
    ib = make_ib()
    alice = new_client(verified=True)
    bob = new_client(verified=True)
    attribution.request_reassignment(alice.pk, ib.pk, by="system:test", reason="setup")
    with clock.frozen(DAY1):
        funded(local_psp, alice, 150_000)
        emit(AmlAlertRaised(client_id=bob.pk, alert_id=new_id(), rule="velocity", severity="low"))
    a, b = open_account(alice.pk), open_account(bob.pk)
    trade(a, at=DAY1, volume=25_000, profit=12_345)
    trade(b, at=DAY2, volume=10_000, profit=-5_000)
    project(outbox_messages())
    return {"ib": ib, "alice": alice, "bob": bob}


def test_ib_daily_report_has_one_row_per_ib_and_day(activity):
    report = queries.ib_daily(START, END)

    rows = {(r["day"], r["ib"]): r for r in report.rows}
    alice_day = rows[(START, f"{activity['ib'].name} ({activity['ib'].code})")]
    assert (alice_day["deposits"], alice_day["volume"], alice_day["deals"]) == (150_000, 25_000, 1)
    direct = rows[(END, "No IB (direct clients)")]
    assert (direct["deposits"], direct["volume"]) == (0, 10_000)


def test_ib_daily_report_narrowed_to_some_ibs(activity):
    mine = queries.ib_daily(START, END, ib_ids=[str(activity["ib"].pk)])
    assert {r["ib_id"] for r in mine.rows} == {str(activity["ib"].pk)}


def test_client_profitability_puts_the_most_profitable_first(activity):
    report = queries.client_profitability(START, END)

    assert [r["client_id"] for r in report.rows] == [
        str(activity["alice"].pk),
        str(activity["bob"].pk),
    ]
    assert report.rows[0]["net_pl"] == 12_345 - 350 and report.rows[1]["net_pl"] == -5_350
    assert report.rows[0]["net_deposits"] == 150_000


def test_ib_performance_counts_active_clients_and_volume(activity):
    report = queries.ib_performance(START, END)
    row = next(r for r in report.rows if r["ib_id"] == str(activity["ib"].pk))
    assert (row["active_clients"], row["volume"], row["deposits"]) == (1, 25_000, 150_000)


def test_payment_methods_and_aml_statistics(activity):
    methods = queries.payment_methods(START, END)
    assert methods.rows == [
        methods.rows[0] | {"provider": "sandbox", "deposit_count": 1, "deposit_amount": 150_000}
    ]
    assert methods.rows[0]["reversal_rate"] == "0.00"
    aml = queries.aml_statistics(START, END)
    assert [(r["rule"], r["alerts"], r["share"]) for r in aml.rows] == [("velocity", 1, "100.00")]


def test_a_reversed_or_too_long_range_is_refused_naming_the_field():
    with pytest.raises(ValidationError) as reversed_range:
        queries.ib_daily(END, START)
    with pytest.raises(ValidationError) as too_long:
        queries.ib_daily(START, START + timedelta(days=400))
    assert reversed_range.value.field == too_long.value.field == "end"


def test_csv_and_xlsx_exports_parse_back_to_the_same_figures(activity):
    report = queries.ib_daily(START, END)

    lines = list(csv.reader(io.StringIO(exports.to_csv(report))))
    book = load_workbook(io.BytesIO(exports.to_xlsx(report)))
    sheet = book.active

    header = [str(c.label) for c in report.columns]
    assert lines[0] == header
    assert [c.value for c in sheet[1]] == header
    deposits = header.index("Deposits")
    volume = header.index("Volume (lots)")
    csv_deposits = sorted(Decimal(line[deposits]) for line in lines[1:])
    xlsx_deposits = sorted(
        Decimal(str(row[deposits])) for row in sheet.iter_rows(min_row=2, values_only=True)
    )
    assert csv_deposits == xlsx_deposits == [Decimal("0.00"), Decimal("1500.00")]
    assert sorted(Decimal(line[volume]) for line in lines[1:]) == [Decimal("1"), Decimal("2.5")]
    assert exports.filename(report, "csv") == "ib-daily_2026-03-02_2026-03-03.csv"


def test_the_statement_pdf_and_csv_carry_the_wallet_figures(local_psp):
    client = new_client(verified=True)
    with clock.frozen(DAY1):
        funded(local_psp, client, 123_456)
    with clock.frozen(DAY2):
        funded(local_psp, client, 1_000)

    pdf = statement_pdf(client.pk, "USD", START, END)
    text = _pdf_text(pdf)
    lines = list(csv.reader(io.StringIO(statement_csv(client.pk, "USD", START, END))))
    only_day2 = list(csv.reader(io.StringIO(statement_csv(client.pk, "USD", END, END))))

    assert pdf.startswith(b"%PDF")
    assert len(re.findall(rb"/Type /Page\b", pdf)) == 1
    assert "Account statement" in text and "Opening balance: 0.00 USD" in text
    assert "1,234.56" in text and "Closing balance: 1,244.56 USD" in text
    assert lines[1][1] == "Opening balance" and lines[-1][1] == "Closing balance"
    assert [line[4] for line in lines[2:-1]] == ["1234.56", "10.00"]
    assert lines[-1][5] == "1244.56"
    assert only_day2[1][5] == "1234.56" and only_day2[-1][5] == "1244.56"


def test_a_client_without_a_wallet_gets_an_empty_statement():
    pdf = statement_pdf(new_id(), "EUR", date(2026, 1, 1), date(2026, 1, 31))
    assert pdf.startswith(b"%PDF") and "No movements in this period." in _pdf_text(pdf)


def test_the_statement_prints_names_outside_latin_1_as_written():
    from brokerdesk.clients import services as clients
    from brokerdesk.reporting import statements

    if not (statements.UNICODE_FONT_DIR / "DejaVuSans.ttf").is_file():
        pytest.fail("Debian's fonts-dejavu-core is part of this machine kind; it is missing")
    client = clients.register_individual(
        email="anna.petrova@example.com",
        first_name="Анна",
        last_name="Петрова-Nguyễn",
        date_of_birth=date(1990, 5, 17),
        country="CY",
        jurisdiction="cysec",
        phone="+357 22 123457",
        by="system:test",
    )

    text = _pdf_text(statement_pdf(client.pk, "USD", START, END))

    assert "Client: Анна Петрова-Nguyễn" in text
    assert "?" not in text


def _pdf_text(pdf: bytes) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
