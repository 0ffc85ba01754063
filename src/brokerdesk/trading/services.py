"""trading commands: trading accounts, account snapshots. (Transfers: :mod:`.transfers`;
ingest: :mod:`.ingest`; reconciliation: :mod:`.reconciliation`.)"""

from __future__ import annotations

from django.db import IntegrityError, transaction

from brokerdesk.core import audit, clock
from brokerdesk.core.errors import Conflict, ValidationError
from brokerdesk.core.events import emit
from brokerdesk.core.money import get_currency
from brokerdesk.trading.events import AccountOpened
from brokerdesk.trading.ingest import apply_account_state, now_msc
from brokerdesk.trading.models import TradingAccount
from brokerdesk.trading.platform.port import AccountState, NewUser, PlatformPort


def register_trading_account(
    *,
    server: str,
    login: int,
    client_id: str,
    currency: str,
    group: str,
    leverage: int,
    is_live: bool = True,
    currency_digits: int | None = None,
    actor: str = "system",
) -> TradingAccount:
    """Link an existing platform login to a client (idempotent on server + login)."""
    spec = get_currency(currency)
    if leverage < 1:
        raise ValidationError("Leverage must be at least 1.", field="leverage")
    existing = TradingAccount.objects.filter(server=server, login=login).first()
    if existing is not None:
        if existing.client_id != str(client_id):
            raise Conflict(
                f"Login {login} on {server} belongs to another client.",
                code="login_taken",
                field="login",
            )
        return existing
    now = clock.now()
    try:
        with transaction.atomic():
            account = TradingAccount.objects.create(
                server=server,
                login=login,
                client_id=str(client_id),
                currency=spec.code,
                currency_digits=spec.scale if currency_digits is None else currency_digits,
                group=group,
                leverage=leverage,
                is_live=is_live,
                created_at=now,
                updated_at=now,
            )
            emit(
                AccountOpened(
                    account_id=str(account.id),
                    client_id=account.client_id,
                    server=server,
                    login=login,
                    currency=account.currency,
                    group=group,
                    leverage=leverage,
                    is_live=is_live,
                )
            )
            audit.record(
                actor=actor,
                action="trading.account_opened",
                object_type="trading_account",
                object_id=str(account.id),
                after={"server": server, "login": login, "client_id": account.client_id},
            )
            return account
    except IntegrityError:
        return register_trading_account(
            server=server,
            login=login,
            client_id=client_id,
            currency=currency,
            group=group,
            leverage=leverage,
            is_live=is_live,
            currency_digits=currency_digits,
            actor=actor,
        )


def open_trading_account(
    port: PlatformPort,
    *,
    client_id: str,
    name: str,
    group: str,
    leverage: int,
    currency: str,
    is_live: bool = True,
    email: str = "",
    actor: str = "system",
) -> TradingAccount:
    """Create a login on the platform (``UserAdd``) and register it for the client."""
    user = port.create_user(NewUser(group=group, leverage=leverage, name=name, email=email))
    return register_trading_account(
        server=port.server_name,
        login=user.login,
        client_id=client_id,
        currency=currency,
        group=user.group,
        leverage=user.leverage,
        is_live=is_live,
        currency_digits=user.currency_digits,
        actor=actor,
    )


def refresh_account_state(port: PlatformPort, login: int) -> AccountState:
    """Poll ``UserAccountRequest`` and apply its margin figures to the summary (newest wins)."""
    at = now_msc()
    state = port.account_state(login)
    with transaction.atomic():
        apply_account_state(port.server_name, state, at)
    return state
