"""Client portal trading pages: live and demo accounts, wallet↔trading transfers, history.

Accounts are opened and money is moved through ``trading.services`` (the saga posts to the
ledger and sends the balance operation to the platform); the pages read ``trading.queries``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _t
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_POST

from brokerdesk.clients.queries import get_client
from brokerdesk.core.errors import DomainError
from brokerdesk.portal.access import client_page
from brokerdesk.portal.formatting import format_lots, format_money, format_scaled
from brokerdesk.portal.forms import OpenAccountForm, TransferForm, add_domain_error
from brokerdesk.portal.views import balance_rows, kyc_context
from brokerdesk.trading import queries as trading_queries
from brokerdesk.trading import services as trading

DEMO_BALANCE = 1_000_000  # 10,000.00 of play money on a new demo account
TRANSFER_STATE = {
    "completed": (_("Completed"), "success"),
    "failed": (_("Failed, money back"), "danger"),
    "needs_attention": (_("Being checked by our team"), "warning"),
}
DEAL_KINDS = {
    "buy": _("Buy"),
    "sell": _("Sell"),
    "balance": _("Balance"),
    "credit": _("Credit"),
    "other": _("Other"),
}


def _server(live: bool) -> tuple[str, str]:
    """(server, group) where the portal opens live or demo accounts (settings or defaults)."""
    from brokerdesk.trading.config import platform_servers

    first = next(iter(platform_servers()), "sim")
    if live:
        return (
            getattr(settings, "PORTAL_LIVE_SERVER", first),
            getattr(settings, "PORTAL_LIVE_GROUP", "real\\standard"),
        )
    return (
        getattr(settings, "PORTAL_DEMO_SERVER", first),
        getattr(settings, "PORTAL_DEMO_GROUP", "demo\\standard"),
    )


@dataclass(frozen=True)
class AccountRow:
    """A trading account as the pages show it."""

    id: Any
    login: int
    is_live: bool
    currency: str
    leverage: int
    balance: str
    equity: str
    open_pl: str
    margin_free: str
    deals: int


def account_rows(client_id: Any) -> list[AccountRow]:
    """The client's trading accounts, formatted for the active locale."""
    return [
        AccountRow(
            a.id,
            a.login,
            a.is_live,
            a.currency,
            a.leverage,
            format_scaled(a.balance, a.currency_digits) + f"\N{NO-BREAK SPACE}{a.currency}",
            format_scaled(a.equity, a.currency_digits) + f"\N{NO-BREAK SPACE}{a.currency}",
            format_scaled(a.open_pl, a.currency_digits),
            format_scaled(a.margin_free, a.currency_digits),
            a.deals,
        )
        for a in trading_queries.accounts_of(client_id)
    ]


@client_page
def accounts(request: HttpRequest) -> HttpResponse:
    """The client's live and demo accounts, and a form to open another."""
    client_id = request.client_id  # type: ignore[attr-defined]
    return render(
        request,
        "portal/accounts.html",
        {
            "accounts": account_rows(client_id),
            "form": OpenAccountForm(),
            **kyc_context(client_id),
        },
    )


@client_page
@require_POST
def open_account(request: HttpRequest) -> HttpResponse:
    """Open a live or demo account on the configured platform server."""
    client_id = request.client_id  # type: ignore[attr-defined]
    form = OpenAccountForm(request.POST)
    if form.is_valid():
        live = form.cleaned_data["kind"] == "live"
        server, group = _server(live)
        client = get_client(client_id)
        try:
            opened = trading.open_client_account(
                str(client_id),
                server=server,
                group=group,
                leverage=form.cleaned_data["leverage"],
                currency=form.cleaned_data["currency"],
                is_live=live,
                name=client.display_name,
                email=client.email,
                demo_balance=0 if live else DEMO_BALANCE,
                actor=f"user:{request.user.pk}",
            )
        except DomainError as error:
            add_domain_error(form, error)
        else:
            kind = _t("live") if live else _t("demo")
            messages.success(
                request,
                _t("Your %(kind)s account %(login)s is ready.")
                % {"kind": kind, "login": opened.login},
            )
            return redirect("portal:accounts")
    return render(
        request,
        "portal/accounts.html",
        {
            "accounts": account_rows(client_id),
            "form": form,
            **kyc_context(client_id),
        },
        status=400,
    )


@client_page
@require_http_methods(["GET", "POST"])
def transfer(request: HttpRequest) -> HttpResponse:
    """Move money between the wallet and a live trading account."""
    client_id = request.client_id  # type: ignore[attr-defined]
    live = [a for a in trading_queries.accounts_of(client_id) if a.is_live]
    choices = [(str(a.id), f"{a.login} ({a.currency})", a.currency) for a in live]
    initial = {"request_id": uuid.uuid4().hex, "direction": "to_trading"}
    if request.GET.get("account"):
        initial["account"] = request.GET["account"]
    form = TransferForm(request.POST or None, accounts=choices, initial=initial)
    if request.method == "POST" and form.is_valid():
        to_trading = form.cleaned_data["direction"] == "to_trading"
        try:
            done = trading.move_client_money(
                str(client_id),
                form.cleaned_data["account"],
                to_trading=to_trading,
                amount=form.minor,
                request_key=f"portal:{client_id}:{form.cleaned_data['request_id']}",
                actor=f"user:{request.user.pk}",
            )
        except DomainError as error:
            add_domain_error(form, error)
        else:
            amount = format_money(done.amount, done.currency)
            if done.state == "completed":
                messages.success(request, _t("%(amount)s were transferred.") % {"amount": amount})
            elif done.state == "failed":
                messages.error(
                    request,
                    _t("The transfer of %(amount)s failed; nothing was moved.")
                    % {"amount": amount},
                )
            else:
                messages.info(
                    request,
                    _t("The transfer of %(amount)s is on its way.") % {"amount": amount},
                )
            return redirect("portal:transfer")
    transfers = [
        (
            t,
            format_money(t.amount, t.currency),
            *TRANSFER_STATE.get(t.state, (_("In progress"), "info")),
        )
        for t in trading_queries.transfers_of(client_id, limit=10)
    ]
    return render(
        request,
        "portal/transfer.html",
        {
            "form": form,
            "has_accounts": bool(live),
            "balances": [b for b in balance_rows(client_id) if b.bucket == "cash"],
            "accounts": [a for a in account_rows(client_id) if a.is_live],
            "transfers": transfers,
        },
    )


@dataclass(frozen=True)
class DealRow:
    """A deal in the trading history."""

    deal: int
    login: int
    time: Any
    kind: str
    entry: str
    symbol: str
    lots: str
    price: str
    profit: str
    profit_negative: bool
    profit_positive: bool
    commission: str
    swap: str


def _deal_label(kind: str, profit: int) -> str:
    """Buy, sell — and a balance deal as the deposit or withdrawal it is."""
    if kind == "balance":
        return str(_("Deposit") if profit >= 0 else _("Withdrawal"))
    return str(DEAL_KINDS.get(kind, kind))


@client_page
def history(request: HttpRequest) -> HttpResponse:
    """Trading history: the deals of the client's accounts (one account or all)."""
    client_id = request.client_id  # type: ignore[attr-defined]
    account_id = request.GET.get("account") or None
    try:
        deals = trading_queries.deals_of(client_id, account_id=account_id, limit=200)
    except DomainError:
        account_id, deals = None, trading_queries.deals_of(client_id, limit=200)
    rows = [
        DealRow(
            d.deal,
            d.login,
            d.time,
            _deal_label(d.kind, d.profit),
            d.entry,
            d.symbol,
            format_lots(d.volume) if d.kind in ("buy", "sell") else "",
            format_scaled(d.price, d.digits) if d.kind in ("buy", "sell") else "",
            format_scaled(d.profit, d.currency_digits),
            d.profit < 0,
            d.profit > 0,
            format_scaled(d.commission, d.currency_digits),
            format_scaled(d.swap, d.currency_digits),
        )
        for d in deals
    ]
    return render(
        request,
        "portal/history.html",
        {
            "deals": rows,
            "accounts": trading_queries.accounts_of(client_id),
            "account_id": account_id or "",
        },
    )
