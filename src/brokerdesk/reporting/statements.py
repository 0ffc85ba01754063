"""A client's wallet statement from the ledger, as PDF (fpdf2) and CSV.

``statement_pdf(client_id, currency, start, end)`` and ``statement_csv(...)`` are the contract
the client portal's statements page calls. The period is inclusive of both dates (UTC). The
figures come from the ledger's read side (``ledger.queries.statement``) for the client's cash
wallet in that currency: opening balance, every posted movement with its running balance, and
the closing balance. No wallet yet means an empty statement with zero balances.

The PDF is set in DejaVu Sans when the system has it (Debian's fonts-dejavu-core; embedded,
so Cyrillic, Greek, Latin Extended, Vietnamese names print as written), else in the built-in
Helvetica, where characters outside Latin-1 print as "?". Scripts DejaVu does not cover (CJK)
and right-to-left shaping need fonts and a shaper the statement does not load yet.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from uuid import UUID

from django.utils.translation import gettext as _
from fpdf import FPDF

from brokerdesk.core.errors import ValidationError
from brokerdesk.core.money import get_currency
from brokerdesk.ledger import queries as ledger
from brokerdesk.ledger.queries import StatementLine
from brokerdesk.reporting.exports import money_decimal


@dataclass(frozen=True)
class WalletStatement:
    """The statement's figures: who, which currency and period, balances and lines."""

    client_id: str
    client_name: str
    currency: str
    start: date
    end: date
    opening: int
    closing: int
    lines: list[StatementLine]

    @property
    def credits(self) -> int:
        """Money in over the period (minor units)."""
        return sum(line.credit for line in self.lines)

    @property
    def debits(self) -> int:
        """Money out over the period (minor units)."""
        return sum(line.debit for line in self.lines)


def wallet_statement(
    client_id: UUID | str, currency: str, start: date, end: date
) -> WalletStatement:
    """The client's cash-wallet statement in ``currency`` for ``start``..``end`` inclusive."""
    code = get_currency(currency).code
    if end < start:
        raise ValidationError(
            "The end date must be on or after the start date.", code="bad_range", field="end"
        )
    since = datetime.combine(start, time.min, tzinfo=UTC)
    until = datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC)
    wallet = next(
        (
            b
            for b in ledger.balances_of("client", str(client_id))
            if b.currency == code and b.bucket == "cash"
        ),
        None,
    )
    if wallet is None:
        opening = closing = 0
        lines: list[StatementLine] = []
    else:
        found = ledger.statement(wallet.account_id, since, until)
        opening, closing, lines = found.opening, found.closing, list(found.lines)
    return WalletStatement(
        str(client_id), _client_name(client_id), code, start, end, opening, closing, lines
    )


def _client_name(client_id: UUID | str) -> str:
    from brokerdesk.clients.queries import get_client
    from brokerdesk.core.errors import NotFound

    try:
        return get_client(client_id).display_name
    except (NotFound, ValueError, ValidationError):
        return str(client_id)


def _amount(value: int, currency: str) -> str:
    return f"{money_decimal(value, currency):,}"


def statement_csv(client_id: UUID | str, currency: str, start: date, end: date) -> str:
    """The statement as CSV: one line per movement, then the opening and closing balances."""
    s = wallet_statement(client_id, currency, start, end)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([_("Date"), _("Type"), _("Reference"), _("Debit"), _("Credit"), _("Balance")])
    writer.writerow(
        [
            s.start.isoformat(),
            _("Opening balance"),
            "",
            "",
            "",
            money_decimal(s.opening, s.currency),
        ]
    )
    for line in s.lines:
        writer.writerow(
            [
                line.at.isoformat(),
                line.kind,
                line.reference,
                money_decimal(line.debit, s.currency) if line.debit else "",
                money_decimal(line.credit, s.currency) if line.credit else "",
                money_decimal(line.balance, s.currency),
            ]
        )
    writer.writerow(
        [s.end.isoformat(), _("Closing balance"), "", "", "", money_decimal(s.closing, s.currency)]
    )
    return out.getvalue()


UNICODE_FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
_UNICODE_FONT_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf"}


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


def _as_is(text: str) -> str:
    return text


class _StatementPDF(FPDF):
    """A4 pages in the statement's font, with a page number at the foot of each."""

    def __init__(self) -> None:
        super().__init__(format="A4")
        self.statement_font = "helvetica"
        self.text_of: Callable[[str], str] = _latin1
        fonts = {style: UNICODE_FONT_DIR / name for style, name in _UNICODE_FONT_FILES.items()}
        if all(path.is_file() for path in fonts.values()):
            for style, path in fonts.items():
                self.add_font("dejavu", style, str(path))
            self.statement_font, self.text_of = "dejavu", _as_is

    def use(self, style: str = "", size: float = 10) -> None:
        """Switch to the statement's font in ``style`` ("" or "B") and ``size``."""
        self.set_font(self.statement_font, style, size)

    def footer(self) -> None:
        self.set_y(-12)
        self.use(size=8)
        self.cell(0, 8, self.text_of(_("Page %(page)s") % {"page": self.page_no()}), align="C")


def statement_pdf(client_id: UUID | str, currency: str, start: date, end: date) -> bytes:
    """The statement as a PDF (A4, uncompressed): header, balances, movements, totals."""
    s = wallet_statement(client_id, currency, start, end)
    pdf = _StatementPDF()
    show = pdf.text_of  # what the font can print of a text
    pdf.set_compression(False)
    pdf.set_title(_("Account statement"))
    pdf.set_author("Brokerdesk")
    pdf.add_page()
    pdf.use("B", 16)
    pdf.cell(0, 10, show(_("Account statement")), new_x="LMARGIN", new_y="NEXT")
    pdf.use(size=10)
    for text in (
        _("Client: %(name)s") % {"name": s.client_name},
        _("Wallet currency: %(currency)s") % {"currency": s.currency},
        _("Period: %(start)s to %(end)s")
        % {"start": s.start.isoformat(), "end": s.end.isoformat()},
        _("Opening balance: %(amount)s %(currency)s")
        % {"amount": _amount(s.opening, s.currency), "currency": s.currency},
    ):
        pdf.cell(0, 6, show(text), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    widths = (34, 30, 54, 24, 24, 24)
    headers = (_("Date"), _("Type"), _("Reference"), _("Debit"), _("Credit"), _("Balance"))
    pdf.use("B", 9)
    for width, header in zip(widths, headers, strict=True):
        pdf.cell(width, 7, show(header), border="B", align="R" if width == 24 else "L")
    pdf.ln()
    pdf.use(size=8)
    for line in s.lines:
        cells = (
            line.at.strftime("%Y-%m-%d %H:%M"),
            line.kind[:18],
            line.reference[:34],
            _amount(line.debit, s.currency) if line.debit else "",
            _amount(line.credit, s.currency) if line.credit else "",
            _amount(line.balance, s.currency),
        )
        for width, text in zip(widths, cells, strict=True):
            pdf.cell(width, 6, show(text), align="R" if width == 24 else "L")
        pdf.ln()
    if not s.lines:
        pdf.cell(0, 6, show(_("No movements in this period.")), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.use("B", 10)
    for text in (
        _("Money in: %(amount)s %(currency)s")
        % {"amount": _amount(s.credits, s.currency), "currency": s.currency},
        _("Money out: %(amount)s %(currency)s")
        % {"amount": _amount(s.debits, s.currency), "currency": s.currency},
        _("Closing balance: %(amount)s %(currency)s")
        % {"amount": _amount(s.closing, s.currency), "currency": s.currency},
    ):
        pdf.cell(0, 6, show(text), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
