"""CSV and XLSX exports of a report (exact decimals: money at the currency's scale, lots).

Money leaves as a decimal string (CSV) or a decimal number (XLSX) at its currency's scale,
converted from integer minor units without float; volume leaves in lots.
"""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Font

from brokerdesk.core.errors import ValidationError
from brokerdesk.core.money import get_currency
from brokerdesk.reporting.queries import VOLUME_PER_LOT, Column, Report


def money_decimal(amount: int, currency: str) -> Decimal:
    """Minor units as a ``Decimal`` at the currency's scale (unknown currency: scale 2)."""
    try:
        scale = get_currency(currency).scale
    except ValidationError:
        scale = 2
    return Decimal(amount).scaleb(-scale)


def lots(volume: int) -> Decimal:
    """MT5 volume units as lots."""
    return Decimal(volume) / VOLUME_PER_LOT


def plain_value(column: Column, row: dict[str, Any]) -> Any:
    """A cell's value for an export: Decimal for money and lots, int for counts, else text."""
    value = row.get(column.key)
    if value is None:
        return ""
    if column.kind == "money":
        return money_decimal(int(value), str(row.get("currency", "")))
    if column.kind == "lots":
        return lots(int(value))
    if column.kind == "count":
        return int(value)
    if column.kind == "date":
        return value.isoformat()
    return str(value)


def filename(report: Report, extension: str) -> str:
    """``ib-daily_2026-03-01_2026-03-31.csv``."""
    return f"{report.slug}_{report.start.isoformat()}_{report.end.isoformat()}.{extension}"


def to_csv(report: Report) -> str:
    """The report as CSV text: a header of column labels, then one line per row."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([str(c.label) for c in report.columns])
    for row in report.rows:
        writer.writerow([plain_value(c, row) for c in report.columns])
    return out.getvalue()


def to_xlsx(report: Report) -> bytes:
    """The report as an XLSX workbook (one sheet, bold header, numeric cells)."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = report.slug[:31]
    sheet.append([str(c.label) for c in report.columns])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in report.rows:
        sheet.append([plain_value(c, row) for c in report.columns])
    for index, column in enumerate(report.columns, start=1):
        if column.kind in {"money", "lots"}:
            for cells in sheet.iter_rows(min_row=2, min_col=index, max_col=index):
                cells[0].number_format = "#,##0.00##"
    sheet.freeze_panes = "A2"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
