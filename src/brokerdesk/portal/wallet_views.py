"""Client portal money pages: wallets and their history, deposits through the sandbox PSP,
withdrawals (with the bonus forfeiture shown before confirming) and statements.

Money moves only through ``payments.services`` (which posts to the ledger); every form carries
a request id generated when the form is shown, so a double submit is the same request.

Where the broker offers more than one wallet currency, a deposit may credit a wallet in another
currency than the one paid, and a withdrawal may be paid out in another currency than the
wallet's; the conversion (rate and fee) is shown before the client confirms.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods

from brokerdesk.core.errors import DomainError
from brokerdesk.ledger.queries import balances_of, statement
from brokerdesk.payments import queries as payment_queries
from brokerdesk.payments import services as payments
from brokerdesk.portal.access import client_page
from brokerdesk.portal.formatting import format_decimal, format_money
from brokerdesk.portal.forms import DepositForm, StatementForm, WithdrawForm, add_domain_error
from brokerdesk.portal.views import balance_rows, kyc_context

SANDBOX_CARD_TOKEN = "sandbox_card_4242"  # noqa: S105 (the sandbox PSP test card, no secret)
HISTORY_DAYS = 90
DEPOSIT_STATUS = {
    "initiated": (_("Starting"), "neutral"),
    "pending": (_("Waiting for your payment"), "info"),
    "confirmed": (_("Received"), "success"),
    "held": (_("Received, being reviewed"), "warning"),
    "failed": (_("Failed"), "danger"),
    "reversed": (_("Reversed"), "danger"),
}
WITHDRAWAL_STATUS = {
    "requested": (_("Requested"), "info"),
    "pending_approval": (_("Waiting for approval"), "warning"),
    "approved": (_("Approved"), "info"),
    "sent": (_("Sent"), "info"),
    "paid": (_("Paid"), "success"),
    "failed": (_("Failed, money back in your wallet"), "danger"),
    "returned": (_("Returned to your wallet"), "warning"),
    "rejected": (_("Rejected, money back in your wallet"), "danger"),
}
ENTRY_KINDS = {
    "deposit": _("Deposit"),
    "deposit_release": _("Deposit"),
    "deposit_fee": _("Deposit fee"),
    "withdrawal_lock": _("Withdrawal requested"),
    "withdrawal_release": _("Withdrawal cancelled"),
    "withdrawal": _("Withdrawal paid"),
    "withdrawal_return": _("Withdrawal returned"),
    "trading.to_trading": _("Transfer to trading account"),
    "trading.to_wallet": _("Transfer from trading account"),
    "fx": _("Currency conversion"),
    "bonus": _("Bonus"),
    "fee": _("Fee"),
    "reversal": _("Correction"),
}


def _new_request_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class HistoryLine:
    """One movement of a wallet bucket."""

    at: datetime
    label: str
    amount: str
    incoming: bool
    balance: str


def _history(client_id: Any, currency: str, bucket: str = "cash") -> list[HistoryLine]:
    account = next(
        (
            b
            for b in balances_of("client", str(client_id))
            if b.currency == currency and b.bucket == bucket
        ),
        None,
    )
    if account is None:
        return []
    end = timezone.now() + timedelta(seconds=1)
    found = statement(account.account_id, end - timedelta(days=HISTORY_DAYS), end)
    return [
        HistoryLine(
            at=line.at,
            label=str(ENTRY_KINDS.get(line.kind, line.kind.replace("_", " ").capitalize())),
            amount=format_money(line.credit - line.debit, currency),
            incoming=line.credit > line.debit,
            balance=format_money(line.balance, currency),
        )
        for line in reversed(found.lines)
    ]


@dataclass(frozen=True)
class PaymentRow:
    """A deposit or withdrawal in the client's list."""

    id: Any
    kind: str
    reference: str
    amount: str
    status_label: Any  # a lazy translation
    tone: str
    wallet: str = ""  # the wallet side of a converted payment ("" when not converted)


def _wallet_side(wallet_currency: str, wallet_amount: int, currency: str) -> str:
    """The wallet amount of a payment converted from or into ``currency`` (or "")."""
    if not wallet_currency or wallet_currency == currency:
        return ""
    return format_money(wallet_amount, wallet_currency) if wallet_amount else wallet_currency


def _payments(client_id: Any) -> list[PaymentRow]:
    rows = []
    for d in payment_queries.deposits_of(client_id, limit=20):
        label, tone = DEPOSIT_STATUS.get(d.status, (d.status, "neutral"))
        rows.append(
            PaymentRow(
                d.id, "deposit", d.reference, format_money(d.amount, d.currency), label, tone,
                _wallet_side(d.wallet_currency, d.wallet_amount, d.currency),
            )
        )  # fmt: skip
    for w in payment_queries.withdrawals_of(client_id, limit=20):
        label, tone = WITHDRAWAL_STATUS.get(w.status, (w.status, "neutral"))
        rows.append(
            PaymentRow(
                w.id, "withdrawal", w.reference, format_money(w.amount, w.currency), label, tone,
                _wallet_side(w.wallet_currency, w.wallet_amount, w.currency),
            )
        )  # fmt: skip
    return rows


@client_page
def wallets(request: HttpRequest) -> HttpResponse:
    """Balances by currency and bucket, the cash history of one currency, recent payments."""
    client_id = request.client_id  # type: ignore[attr-defined]
    rows = balance_rows(client_id)
    currencies = sorted({r.currency for r in rows})
    currency = request.GET.get("currency", currencies[0] if currencies else "")
    if currency not in currencies:
        currency = currencies[0] if currencies else ""
    return render(
        request,
        "portal/wallets.html",
        {
            "balances": rows,
            "currencies": currencies,
            "currency": currency,
            "history": _history(client_id, currency) if currency else [],
            "history_days": HISTORY_DAYS,
            "payments": _payments(client_id),
        },
    )


def rate_text(rate: Decimal) -> str:
    """A conversion rate for people: at most six decimals, at least two (1.05, 0.857143)."""
    rounded = rate.quantize(Decimal("0.000001")).normalize()
    exponent = rounded.as_tuple().exponent
    places = max(2, -exponent if isinstance(exponent, int) else 2)
    return format_decimal(rounded, places)


def _places(bps: int) -> int:
    """Decimals a percentage of ``bps`` needs: 100 → 0 (1), 50 → 1 (0.5), 25 → 2 (0.25)."""
    return 0 if bps % 100 == 0 else 1 if bps % 10 == 0 else 2


def _conversion(quote: payment_queries.ConversionQuote) -> dict[str, Any]:
    """A quote as the review boxes show it."""
    return {
        "sell": format_money(quote.sell_amount, quote.sell),
        "rate": gettext("1 %(sell)s = %(rate)s %(buy)s")
        % {"sell": quote.sell, "rate": rate_text(quote.rate), "buy": quote.buy},
        "rate_day": quote.rate_day,
        "raw_rate": str(quote.rate),
        "fee": format_money(quote.fee, quote.buy),
        "fee_percent": gettext("%(percent)s%%")
        % {"percent": format_decimal(Decimal(quote.fee_bps) / 100, _places(quote.fee_bps))},
        "net": format_money(quote.net, quote.buy),
        "buy": quote.buy,
    }


def _conversion_error(form: Any, field: str, error: DomainError, sell: str, buy: str) -> None:
    """Explain to the client why ``sell`` cannot become ``buy`` (no rate, too small)."""
    if error.code == "too_small":
        text = gettext("The amount is too small to convert into %(buy)s.")
        form.add_error("amount", text % {"buy": buy})
    elif error.code in ("no_rate", "no_rates"):
        text = gettext(
            "We cannot convert %(sell)s into %(buy)s at the moment. Choose %(sell)s, or try "
            "again later."
        )
        form.add_error(field, text % {"sell": sell, "buy": buy})
    else:
        add_domain_error(form, error)


@client_page
@require_http_methods(["GET", "POST"])
def deposit(request: HttpRequest) -> HttpResponse:
    """Deposit by card through the sandbox PSP: create the intent, then pay on its page. Paying
    in another currency than the wallet's, the client first sees the conversion and confirms."""
    client_id = request.client_id  # type: ignore[attr-defined]
    form = DepositForm(request.POST or None, initial={"request_id": _new_request_id()})
    review: dict[str, Any] | None = None
    if request.method == "POST" and form.is_valid():
        paid, wallet = form.cleaned_data["currency"], form.wallet
        if wallet != paid and request.POST.get("confirm") != "1":
            try:
                quote = payment_queries.conversion_quote(form.minor, paid, wallet)
            except DomainError as error:
                _conversion_error(form, "wallet_currency", error, paid, wallet)
            else:
                review = _conversion(quote)
                review["deposit_fee"] = format_money(payments.deposit_fee(quote.net), wallet)
                review["has_deposit_fee"] = payments.deposit_fee(quote.net) > 0
        else:
            try:
                intent = payments.create_deposit_intent(
                    client_id,
                    amount=form.minor,
                    currency=paid,
                    request_id=f"portal:{client_id}:{form.cleaned_data['request_id']}",
                    by=request.user,
                    provider="sandbox",
                    method_token=SANDBOX_CARD_TOKEN,
                    method_kind="card",
                    wallet_currency=wallet if wallet != paid else None,
                )
            except DomainError as error:
                _conversion_error(form, "wallet_currency", error, paid, wallet)
            else:
                return redirect("portal:deposit_status", deposit_id=intent.id)
    return render(
        request,
        "portal/deposit.html",
        {"form": form, "review": review, **kyc_context(client_id)},
    )


def _own_deposit(client_id: Any, deposit_id: Any) -> payments.DepositView:
    try:
        found = payment_queries.get_deposit(deposit_id)
    except DomainError:
        raise Http404 from None
    if found.client_id != client_id:
        raise Http404
    return found


def _deposit_conversion(found: payments.DepositView) -> dict[str, str] | None:
    """The wallet a converting deposit credits and, once confirmed, what it was credited at."""
    if not found.wallet_currency or found.wallet_currency == found.currency:
        return None
    done = found.fx_rate is not None and found.wallet_amount > 0
    return {
        "wallet": found.wallet_currency,
        "credited": format_money(found.wallet_amount, found.wallet_currency) if done else "",
        "rate": gettext("1 %(sell)s = %(rate)s %(buy)s")
        % {"sell": found.currency, "rate": rate_text(found.fx_rate), "buy": found.wallet_currency}
        if found.fx_rate is not None
        else "",
        "fee": format_money(found.fx_fee, found.wallet_currency) if done else "",
    }


@client_page
def deposit_status(request: HttpRequest, deposit_id: uuid.UUID) -> HttpResponse:
    """Where a deposit stands; the page polls (htmx) until the PSP's webhook has arrived."""
    client_id = request.client_id  # type: ignore[attr-defined]
    found = _own_deposit(client_id, deposit_id)
    label, tone = DEPOSIT_STATUS.get(found.status, (found.status, "neutral"))
    context = {
        "deposit": found,
        "amount": format_money(found.amount, found.currency),
        "status_label": label,
        "tone": tone,
        "waiting": found.status in ("initiated", "pending"),
        "conversion": _deposit_conversion(found),
    }
    template = "portal/_deposit_status.html" if request.headers.get("HX-Request") else None
    return render(request, template or "portal/deposit_status.html", context)


def _forfeiture(client_id: Any, currency: str, amount: int) -> Any:
    """The bonuses module's preview of what a withdrawal would forfeit (None without it)."""
    try:
        from brokerdesk.bonuses.queries import forfeiture_preview
    except ImportError:
        return None
    preview = forfeiture_preview(client_id, currency, amount)
    return preview if preview.forfeited else None


@client_page
@require_http_methods(["GET", "POST"])
def withdraw(request: HttpRequest) -> HttpResponse:
    """Withdraw to a method the client deposited with, in two steps: review (the amount, the
    method, the conversion when paid out in another currency, and any bonus the withdrawal
    would forfeit), then confirm. A rate that moved between the two is shown again."""
    client_id = request.client_id  # type: ignore[attr-defined]
    methods = payment_queries.withdrawal_methods(client_id)
    choices = [(str(m.id), f"{m.label} ({', '.join(m.currencies)})") for m in methods]
    form = WithdrawForm(
        request.POST or None, methods=choices, initial={"request_id": _new_request_id()}
    )
    review: dict[str, Any] | None = None
    if request.method == "POST" and form.is_valid():
        currency, payout = form.cleaned_data["currency"], form.payout
        conversion: dict[str, Any] | None = None
        if payout != currency:
            try:
                conversion = _conversion(
                    payment_queries.conversion_quote(form.minor, currency, payout)
                )
            except DomainError as error:
                _conversion_error(form, "payout_currency", error, currency, payout)
        confirm = request.POST.get("confirm") == "1"
        # a conversion is confirmed only at the rate the client was shown
        shown = request.POST.get("quoted_rate")
        unseen_rate = conversion is not None and shown != conversion["raw_rate"]
        if form.errors:
            review = None
        elif confirm and not unseen_rate:
            try:
                done = payments.request_withdrawal(
                    client_id,
                    amount=form.minor,
                    currency=currency,
                    method_id=form.cleaned_data["method"],
                    request_id=f"portal:{client_id}:{form.cleaned_data['request_id']}",
                    by=request.user,
                    payout_currency=payout if payout != currency else None,
                )
            except DomainError as error:
                add_domain_error(form, error)
            else:
                label, _tone = WITHDRAWAL_STATUS.get(done.status, (done.status, ""))
                if done.wallet_currency:
                    text = gettext(
                        "Your withdrawal of %(wallet)s was requested, paid out as %(amount)s. "
                        "Status: %(status)s."
                    ) % {
                        "wallet": format_money(form.minor, currency),
                        "amount": format_money(done.amount, done.currency),
                        "status": label,
                    }
                else:
                    text = gettext(
                        "Your withdrawal of %(amount)s was requested. Status: %(status)s."
                    ) % {
                        "amount": format_money(done.amount, done.currency),
                        "status": label,
                    }
                messages.success(request, text)
                return redirect("portal:wallets")
        else:
            preview = _forfeiture(client_id, currency, form.minor)
            review = {
                "amount": format_money(form.minor, currency),
                "method": dict(choices).get(form.cleaned_data["method"], ""),
                "conversion": conversion,
                "rate_moved": confirm and unseen_rate,
                "preview": preview,
                "forfeited": format_money(preview.forfeited, currency) if preview else "",
                "bonuses": [
                    (name, format_money(amount, currency))
                    for _bonus_id, name, amount in (preview.bonuses if preview else [])
                ],
            }
    return render(
        request,
        "portal/withdraw.html",
        {
            "form": form,
            "methods": methods,
            "review": review,
            "balances": balance_rows(client_id),
            **kyc_context(client_id),
        },
    )


def _statement_csv_fallback(client_id: Any, currency: str, start: date, end: date) -> str:
    """The cash wallet's statement from the ledger as CSV (when reporting has none)."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["date", "kind", "reference", "debit", "credit", "balance", "currency"])
    account = next(
        (
            b
            for b in balances_of("client", str(client_id))
            if b.currency == currency and b.bucket == "cash"
        ),
        None,
    )
    if account is not None:
        begin = datetime.combine(start, time.min, tzinfo=UTC)
        finish = datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC)
        for line in statement(account.account_id, begin, finish).lines:
            writer.writerow(
                [
                    line.at.isoformat(),
                    line.kind,
                    line.reference,
                    line.debit,
                    line.credit,
                    line.balance,
                    currency,
                ]
            )
    return out.getvalue()


def _statement_file(
    client_id: Any, currency: str, start: date, end: date, fmt: str
) -> tuple[bytes | str, str]:
    """(body, content type) from ``reporting.statements``, or the ledger CSV fallback."""
    try:
        from brokerdesk.reporting import statements
    except ImportError:
        return _statement_csv_fallback(client_id, currency, start, end), "text/csv"
    if fmt == "pdf":
        return statements.statement_pdf(client_id, currency, start, end), "application/pdf"
    return statements.statement_csv(client_id, currency, start, end), "text/csv"


def statements_available() -> bool:
    """True when the reporting module provides statements (PDF and CSV)."""
    try:
        from brokerdesk.reporting import statements  # noqa: F401
    except ImportError:
        return False
    return True


@client_page
def statements_page(request: HttpRequest) -> HttpResponse:
    """Choose a wallet and period; download the statement as PDF or CSV."""
    client_id = request.client_id  # type: ignore[attr-defined]
    currencies = sorted({b.currency for b in balances_of("client", str(client_id))}) or ["USD"]
    today = timezone.now().date()
    data = request.GET if "currency" in request.GET else None
    form = StatementForm(
        data,
        currencies=currencies,
        initial={"currency": currencies[0], "start": today.replace(day=1), "end": today},
    )
    if data is not None and form.is_valid():
        fmt = request.GET.get("format", "pdf")
        fmt = fmt if fmt in ("pdf", "csv") and statements_available() else "csv"
        c = form.cleaned_data
        body, content_type = _statement_file(client_id, c["currency"], c["start"], c["end"], fmt)
        name = f"statement-{c['currency']}-{c['start']:%Y%m%d}-{c['end']:%Y%m%d}.{fmt}"
        response = HttpResponse(body, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
    return render(
        request,
        "portal/statements.html",
        {"form": form, "pdf_available": statements_available()},
    )
