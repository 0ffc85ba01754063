"""Read side of the trading module: a client's trading accounts, their summaries, deals and
wallet↔trading transfers, shaped for screens (the client portal, the back office).

Every function that takes ``client_id`` returns only that client's rows; asking for another
client's account is ``NotFound``, never someone else's data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.core.exceptions import ValidationError as DjangoValidationError

from brokerdesk.core.errors import NotFound
from brokerdesk.trading.models import (
    AccountSummary,
    TradingAccount,
    TradingDeal,
    TradingDealCorrection,
    TradingTransfer,
)
from brokerdesk.trading.platform.port import DealAction, DealEntry


@dataclass(frozen=True)
class AccountView:
    """A trading account with its summary figures (minor units of the account currency)."""

    id: UUID
    server: str
    login: int
    currency: str
    currency_digits: int
    group: str
    leverage: int
    is_live: bool
    created_at: datetime
    balance: int = 0
    credit: int = 0
    equity: int = 0
    open_pl: int = 0
    margin: int = 0
    margin_free: int = 0
    deals: int = 0


@dataclass(frozen=True)
class DealView:
    """A deal of one of the client's accounts (volume in 1/10,000 lot, price in points)."""

    server: str
    login: int
    deal: int
    time: datetime
    kind: str  # buy, sell, balance, credit, other
    entry: str  # in, out, inout, out_by
    symbol: str
    volume: int
    price: int
    digits: int
    profit: int
    commission: int
    swap: int
    currency_digits: int
    comment: str


@dataclass(frozen=True)
class TransferView:
    """A wallet↔trading transfer as the client sees it."""

    id: UUID
    direction: str
    account_id: UUID
    login: int
    currency: str
    amount: int
    state: str
    error: str
    created_at: datetime


def _view(account: TradingAccount, summary: AccountSummary | None) -> AccountView:
    figures = {}
    if summary is not None:
        figures = {
            "balance": summary.balance,
            "credit": summary.credit,
            "equity": summary.equity,
            "open_pl": summary.open_pl,
            "margin": summary.margin,
            "margin_free": summary.margin_free,
            "deals": summary.deals,
        }
    return AccountView(
        account.id,
        account.server,
        account.login,
        account.currency,
        account.currency_digits,
        account.group,
        account.leverage,
        account.is_live,
        account.created_at,
        **figures,
    )


def _summaries(accounts: list[TradingAccount]) -> dict[tuple[str, int], AccountSummary]:
    logins = {a.login for a in accounts}
    rows = AccountSummary.objects.filter(login__in=logins)
    return {(s.server, s.login): s for s in rows}


def accounts_of(client_id: UUID | str) -> list[AccountView]:
    """The client's trading accounts (live first, then demo; oldest first), with summaries."""
    accounts = list(
        TradingAccount.objects.filter(client_id=str(client_id)).order_by(
            "-is_live", "created_at", "login"
        )
    )
    summaries = _summaries(accounts)
    return [_view(a, summaries.get((a.server, a.login))) for a in accounts]


def account_of(client_id: UUID | str, account_id: UUID | str) -> AccountView:
    """One of the client's accounts; ``NotFound`` when it is not theirs (or does not exist)."""
    try:
        account = TradingAccount.objects.filter(pk=account_id, client_id=str(client_id)).first()
    except (ValueError, DjangoValidationError):
        account = None
    if account is None:
        raise NotFound("No such trading account.", code="account_not_found", field="account_id")
    summary = AccountSummary.objects.filter(server=account.server, login=account.login).first()
    return _view(account, summary)


_KINDS = {
    DealAction.DEAL_BUY: "buy",
    DealAction.DEAL_SELL: "sell",
    DealAction.DEAL_BALANCE: "balance",
    DealAction.DEAL_CREDIT: "credit",
}
_ENTRIES = {
    DealEntry.ENTRY_IN: "in",
    DealEntry.ENTRY_OUT: "out",
    DealEntry.ENTRY_INOUT: "inout",
    DealEntry.ENTRY_OUT_BY: "out_by",
}


def _deal(d: TradingDeal) -> DealView:
    return DealView(
        d.server,
        d.login,
        d.deal,
        d.time,
        _KINDS.get(d.action, "other"),  # type: ignore[call-overload]
        _ENTRIES.get(d.entry, "in"),  # type: ignore[call-overload]
        d.symbol,
        d.volume,
        d.price,
        d.digits,
        d.profit,
        d.commission,
        d.storage,
        d.currency_digits,
        d.comment,
    )


def deals_of(
    client_id: UUID | str, *, account_id: UUID | str | None = None, limit: int = 200
) -> list[DealView]:
    """The client's deals (one account, or all of them), newest first."""
    accounts = TradingAccount.objects.filter(client_id=str(client_id))
    if account_id is not None:
        account_of(client_id, account_id)  # NotFound for another client's account
        accounts = accounts.filter(pk=account_id)
    by_server: dict[str, list[int]] = {}
    for server, login in accounts.values_list("server", "login"):
        by_server.setdefault(server, []).append(login)
    deals: list[TradingDeal] = []
    for server, logins in by_server.items():
        deleted = TradingDealCorrection.objects.filter(  # deleted on the platform by a dealer
            server=server, login__in=logins, deleted=True
        ).values("deal")
        deals.extend(
            TradingDeal.objects.filter(server=server, login__in=logins)
            .exclude(deal__in=deleted)
            .order_by("-time", "-deal")[:limit]
        )
    deals.sort(key=lambda d: (d.time, d.deal), reverse=True)
    return [_deal(d) for d in deals[:limit]]


def transfers_of(client_id: UUID | str, *, limit: int = 50) -> list[TransferView]:
    """The client's wallet↔trading transfers, newest first."""
    rows = (
        TradingTransfer.objects.select_related("account")
        .filter(client_id=str(client_id))
        .order_by("-created_at")[:limit]
    )
    return [_transfer(t) for t in rows]


def _transfer(t: TradingTransfer) -> TransferView:
    return TransferView(
        t.id,
        t.direction,
        t.account_id,
        t.account.login,
        t.currency,
        t.amount,
        t.state,
        t.error,
        t.created_at,
    )


def transfer_view(transfer: TradingTransfer) -> TransferView:
    """The view of a transfer row (for the services that return one)."""
    return _transfer(transfer)
