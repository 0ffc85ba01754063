"""The trading API router, mounted at /api/v1/trading/."""

from __future__ import annotations

from ninja import Router

router = Router(tags=["trading"])


# --- account summary (added by reporting for the scale benchmark) ---------------------------

from django.http import HttpRequest  # noqa: E402
from ninja import Schema  # noqa: E402

from brokerdesk.core.errors import NotFound  # noqa: E402
from brokerdesk.staff.api import SessionUser  # noqa: E402


class AccountSummaryOut(Schema):
    """One trading account's summary row (money: minor units at ``currency_digits``)."""

    server: str
    login: int
    currency: str
    currency_digits: int
    balance: int
    credit: int
    equity: int
    open_pl: int
    margin: int
    margin_free: int
    margin_level: int
    deals: int
    updated_msc: int


@router.get("/accounts/{login}/summary", auth=SessionUser(), response=AccountSummaryOut)
def account_summary(request: HttpRequest, login: int, server: str = "") -> AccountSummaryOut:
    """The signed-in client's trading account ``login`` (on ``server`` if given): one flat row.

    Another client's login is 404, as if it did not exist. Reads the account-summary read
    model kept by the ingest consumer (no join over deals).
    """
    from brokerdesk.clients.queries import client_id_for_user
    from brokerdesk.trading.models import AccountSummary, TradingAccount

    client_id = client_id_for_user(request.user)
    accounts = TradingAccount.objects.filter(client_id=str(client_id), login=login)
    if server:
        accounts = accounts.filter(server=server)
    account = accounts.order_by("server").first() if client_id else None
    if account is None:
        raise NotFound("No such trading account.", code="account_not_found", field="login")
    row = AccountSummary.objects.filter(server=account.server, login=login).first()
    return AccountSummaryOut(
        server=account.server,
        login=login,
        currency=account.currency,
        currency_digits=row.currency_digits if row else account.currency_digits,
        balance=row.balance if row else 0,
        credit=row.credit if row else 0,
        equity=row.equity if row else 0,
        open_pl=row.open_pl if row else 0,
        margin=row.margin if row else 0,
        margin_free=row.margin_free if row else 0,
        margin_level=row.margin_level if row else 0,
        deals=row.deals if row else 0,
        updated_msc=row.updated_msc if row else 0,
    )
