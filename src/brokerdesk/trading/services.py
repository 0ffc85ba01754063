"""trading commands: trading accounts, account snapshots. (Transfers: :mod:`.transfers`;
ingest: :mod:`.ingest`; reconciliation: :mod:`.reconciliation`.)"""

from __future__ import annotations

import contextlib
import threading

from django.db import IntegrityError, transaction

from brokerdesk.core import audit, clock
from brokerdesk.core.errors import Conflict, ValidationError
from brokerdesk.core.events import emit
from brokerdesk.core.money import get_currency
from brokerdesk.trading.events import AccountOpened
from brokerdesk.trading.ingest import apply_account_state, now_msc
from brokerdesk.trading.models import TradingAccount, TradingTransfer
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


# --- client self-service (the client portal calls these) ---------------------------------------

_PORTS: dict[str, PlatformPort] = {}
_PORTS_LOCK = threading.Lock()


def connected_port(server: str) -> PlatformPort:
    """A connected adapter for the configured ``server`` (one per process, reconnected when
    its link dropped)."""
    from brokerdesk.trading.config import build_adapter, platform_servers

    servers = platform_servers()
    if server not in servers:
        raise ValidationError(
            f"No platform server {server!r} is configured.", code="unknown_server", field="server"
        )
    with _PORTS_LOCK:
        port = _PORTS.get(server)
        if port is None or not port.is_connected():
            if port is not None:
                with contextlib.suppress(Exception):
                    port.disconnect()
            port = build_adapter(servers[server])
            port.connect()
            _PORTS[server] = port
        return port


def forget_ports() -> None:
    """Disconnect and drop the cached adapters (tests; a changed configuration)."""
    with _PORTS_LOCK:
        for port in _PORTS.values():
            with contextlib.suppress(Exception):
                port.disconnect()
        _PORTS.clear()


def open_client_account(
    client_id: str,
    *,
    server: str,
    group: str,
    leverage: int,
    currency: str,
    is_live: bool,
    name: str,
    email: str = "",
    demo_balance: int = 0,
    actor: str = "system",
) -> TradingAccount:
    """Open a login for the client on ``server`` and link it to the client record (so deals
    find their client). Live accounts need the ``trade`` permission of the compliance policy;
    a demo account gets ``demo_balance`` of play money on the platform."""
    from brokerdesk.clients import services as client_services
    from brokerdesk.compliance.queries import may
    from brokerdesk.core.errors import PermissionDenied

    if leverage < 1:
        raise ValidationError("Leverage must be at least 1.", field="leverage")
    if is_live:
        decision = may(client_id, "trade")
        if not decision.allowed:
            raise PermissionDenied(decision.reason, code=decision.reason_code, field="client_id")
    port = connected_port(server)
    account = open_trading_account(
        port,
        client_id=str(client_id),
        name=name,
        group=group,
        leverage=leverage,
        currency=currency,
        is_live=is_live,
        email=email,
        actor=actor,
    )
    if not is_live and demo_balance > 0:  # play money, on the platform only (no ledger)
        from brokerdesk.trading.platform.port import BalanceOp

        port.balance_operation(account.login, BalanceOp.DEPOSIT, demo_balance, "demo funds")
    from brokerdesk.trading.config import platform_servers

    kind = platform_servers()[server].kind
    client_services.link_platform_login(
        client_id,
        platform=kind if kind in ("mt4", "mt5") else "simulator",
        server=server,
        login=account.login,
        currency=account.currency,
        is_live=is_live,
        by=actor,
        trading_account_id=account.id,
    )
    return account


def move_client_money(
    client_id: str,
    account_id: str,
    *,
    to_trading: bool,
    amount: int,
    request_key: str,
    actor: str = "system",
) -> TradingTransfer:
    """Move money between the client's wallet and one of the client's own trading accounts
    (the saga in :mod:`.transfers`); the same ``request_key`` is the same transfer."""
    from brokerdesk.compliance.queries import may
    from brokerdesk.core.errors import NotFound, PermissionDenied
    from brokerdesk.trading import transfers

    account = TradingAccount.objects.filter(pk=account_id, client_id=str(client_id)).first()
    if account is None:
        raise NotFound("No such trading account.", code="account_not_found", field="account_id")
    if to_trading and account.is_live:
        decision = may(client_id, "trade")
        if not decision.allowed:
            raise PermissionDenied(decision.reason, code=decision.reason_code, field="client_id")
    if not account.is_live:
        raise ValidationError(
            "Demo accounts are funded with play money; no wallet transfers.",
            code="demo_account",
            field="account_id",
        )
    port = connected_port(account.server)
    move = transfers.transfer_to_trading if to_trading else transfers.transfer_to_wallet
    return move(port, account, amount, request_key, actor=actor)
