"""Wallet ↔ trading-account transfers as a saga with recovery points.

Wallet → trading (``to_trading``)::

    NEW ──reserve──▶ RESERVED ──mark──▶ PLATFORM_SENT ──ticket / deal by comment──▶
    PLATFORM_DONE ──post pending──▶ COMPLETED
    (refused, or not found on the platform after the grace period, or reserve too old:
     void the reservation ──▶ FAILED)

1. reserve: a ledger *pending* transfer client cash → ``platform_clearing`` (qualified by the
   server) with a timeout, committed together with the move to RESERVED;
2. PLATFORM_SENT is committed *before* the balance operation goes out, so a crash after it
   always leads recovery to ask the platform instead of sending again (the balance operation
   is sent at most once per transfer: only the winner of the RESERVED → PLATFORM_SENT
   compare-and-set sends);
3. the platform's ``DealerBalance`` with the transfer id in the comment
   (:func:`~brokerdesk.trading.platform.port.transfer_comment`); when its answer is lost the
   deal is looked up by comment (``find_balance_deal``);
4. the pending transfer is posted (committed together with COMPLETED).

Trading → wallet (``to_wallet``): NEW → PLATFORM_SENT → (withdrawal on the platform) →
PLATFORM_DONE → (ledger: ``platform_clearing`` → client cash, posted) → COMPLETED; a refusal
or a withdrawal the platform does not have after the grace period → FAILED.

A crash anywhere leaves a state from which :func:`resume` (run by the periodic job
``trading.recover_transfers`` for transfers idle longer than ``STUCK_AFTER``) finishes or
compensates: the money ends fully moved or fully back. The ledger's own expiry releases a
reservation nobody resolved; a deposit that the platform confirms after its reservation
expired is posted late from the wallet if the wallet still holds the money, else the
transfer goes to NEEDS_ATTENTION (and reconciliation flags it).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from django.db import IntegrityError, transaction

from brokerdesk.core import audit, clock
from brokerdesk.core.errors import Conflict, DomainError, IllegalTransition, ValidationError
from brokerdesk.core.events import emit
from brokerdesk.ledger import errors as ledger_errors
from brokerdesk.ledger import services as ledger
from brokerdesk.trading.events import TransferCompleted
from brokerdesk.trading.models import (
    TradingAccount,
    TradingTransfer,
    TransferDirection,
    TransferState,
)
from brokerdesk.trading.platform.port import (
    BalanceOp,
    ConfirmationLost,
    PlatformConnectionError,
    PlatformError,
    PlatformPort,
    datetime_to_msc,
    transfer_comment,
)

log = structlog.get_logger(__name__)
S = TransferState

#: The explicit transition table: anything else raises ``IllegalTransition``.
TRANSITIONS: dict[str, frozenset[str]] = {
    S.NEW: frozenset({S.RESERVED, S.PLATFORM_SENT, S.FAILED}),
    S.RESERVED: frozenset({S.PLATFORM_SENT, S.FAILED}),
    S.PLATFORM_SENT: frozenset({S.PLATFORM_DONE, S.FAILED}),
    S.PLATFORM_DONE: frozenset({S.COMPLETED, S.NEEDS_ATTENTION}),
    S.NEEDS_ATTENTION: frozenset({S.COMPLETED, S.FAILED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
}
TERMINAL = frozenset({S.COMPLETED, S.FAILED})
ACTIVE = (S.NEW, S.RESERVED, S.PLATFORM_SENT, S.PLATFORM_DONE)

RESERVE_TIMEOUT = timedelta(minutes=15)
#: Do not send the platform operation when the reservation has less than this left.
SEND_MARGIN = timedelta(minutes=2)
#: A transfer untouched this long is "stuck" and recovery takes it over.
STUCK_AFTER = timedelta(seconds=30)
#: After this long without the deal on the platform, a sent operation is taken as not applied.
SENT_GRACE = timedelta(seconds=30)
#: How far before ``sent_at`` to search for the deal (clock skew between us and the server).
SEARCH_SKEW_MS = 5 * 60_000


def _no_hook(step: str) -> None:
    return None


#: Called after each recovery point with its name (tests raise here to simulate a crash).
step_hook: Callable[[str], None] = _no_hook


def _step(name: str) -> None:
    step_hook(name)


def _key(transfer: TradingTransfer, what: str) -> str:
    return f"trading.transfer:{transfer.id}:{what}"


def transfer_id_from_key(key: str) -> uuid.UUID | None:
    """The transfer id in a ledger idempotency key written by this module, if any."""
    parts = key.split(":")
    if len(parts) != 3 or parts[0] != "trading.transfer":
        return None
    try:
        return uuid.UUID(parts[1])
    except ValueError:
        return None


def _clearing(account: TradingAccount) -> Any:
    return ledger.system_account("platform_clearing", account.currency, qualifier=account.server)


def _wallet(account: TradingAccount) -> Any:
    return ledger.wallet_account(account.client_id, account.currency)


# --- state machine -----------------------------------------------------------------------------


def _move(transfer: TradingTransfer, to: str, *, note: str = "", **fields: Any) -> TradingTransfer:
    """Compare-and-set ``transfer`` from its current state to ``to`` (inside a transaction).

    Raises ``IllegalTransition`` when the table forbids it, ``Conflict`` when another process
    moved the transfer first.
    """
    source = transfer.state
    if to not in TRANSITIONS[source]:
        raise IllegalTransition(
            f"Transfer {transfer.id}: {source} → {to} is not allowed.", field="state"
        )
    now = clock.now()
    history = [*transfer.history, {"at": now.isoformat(), "from": source, "to": to, "note": note}]
    updated = TradingTransfer.objects.filter(id=transfer.id, state=source).update(
        state=to, updated_at=now, history=history, **fields
    )
    if not updated:
        raise Conflict(
            f"Transfer {transfer.id} moved on meanwhile (was {source}).", code="transfer_moved"
        )
    transfer.state = to
    transfer.updated_at = now
    transfer.history = history
    for name, value in fields.items():
        setattr(transfer, name, value)
    if to in TERMINAL:
        emit(
            TransferCompleted(
                transfer_id=str(transfer.id),
                client_id=transfer.client_id,
                account_id=str(transfer.account_id),
                direction=transfer.direction,
                amount=transfer.amount,
                currency=transfer.currency,
                state=to,
                platform_ticket=transfer.platform_ticket,
            )
        )
    if to in TERMINAL or to == S.NEEDS_ATTENTION:
        audit.record(
            actor=transfer.actor,
            action=f"trading.transfer_{to}",
            object_type="trading_transfer",
            object_id=str(transfer.id),
            reason=note,
            before={"state": source},
            after={
                "state": to,
                "amount": transfer.amount,
                "currency": transfer.currency,
                "platform_ticket": transfer.platform_ticket,
            },
        )
    return transfer


# --- commands ----------------------------------------------------------------------------------


def transfer_to_trading(
    port: PlatformPort,
    account: TradingAccount,
    amount: int,
    request_key: str,
    *,
    actor: str = "system",
    timeout: timedelta = RESERVE_TIMEOUT,
) -> TradingTransfer:
    """Move ``amount`` (minor units) from the client's wallet to the trading account."""
    transfer = _create(account, amount, request_key, TransferDirection.TO_TRADING, actor)
    return resume(port, transfer, timeout=timeout)


def transfer_to_wallet(
    port: PlatformPort,
    account: TradingAccount,
    amount: int,
    request_key: str,
    *,
    actor: str = "system",
) -> TradingTransfer:
    """Move ``amount`` (minor units) from the trading account back to the client's wallet."""
    transfer = _create(account, amount, request_key, TransferDirection.TO_WALLET, actor)
    return resume(port, transfer)


def _create(
    account: TradingAccount, amount: int, request_key: str, direction: str, actor: str
) -> TradingTransfer:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ValidationError("Amount must be a positive integer of minor units.", field="amount")
    if not request_key:
        raise ValidationError("A request key is required.", field="request_key")
    existing = TradingTransfer.objects.filter(request_key=request_key).first()
    if existing is None:
        try:
            return _insert(account, amount, request_key, direction, actor)
        except IntegrityError:  # the same key, created meanwhile by a concurrent request
            existing = TradingTransfer.objects.get(request_key=request_key)
    if (existing.direction, existing.account_id, existing.amount) != (
        direction,
        account.id,
        amount,
    ):
        raise Conflict(
            f"Request key {request_key!r} was used for a different transfer.",
            code="idempotency_conflict",
            field="request_key",
        )
    return existing


def _insert(
    account: TradingAccount, amount: int, request_key: str, direction: str, actor: str
) -> TradingTransfer:
    """The NEW transfer row and its audit entry (IntegrityError when the key exists)."""
    now = clock.now()
    tid = uuid.uuid4()
    with transaction.atomic():
        transfer = TradingTransfer.objects.create(
            id=tid,
            request_key=request_key,
            direction=direction,
            account=account,
            client_id=account.client_id,
            currency=account.currency,
            amount=amount,
            comment=transfer_comment(tid),
            state=S.NEW,
            actor=actor,
            history=[{"at": now.isoformat(), "to": S.NEW, "note": "requested"}],
            created_at=now,
            updated_at=now,
        )
        audit.record(
            actor=actor,
            action="trading.transfer_requested",
            object_type="trading_transfer",
            object_id=str(tid),
            after={
                "direction": direction,
                "amount": amount,
                "currency": account.currency,
                "server": account.server,
                "login": account.login,
                "request_key": request_key,
            },
        )
    return transfer


def resume(
    port: PlatformPort, transfer: TradingTransfer, *, timeout: timedelta = RESERVE_TIMEOUT
) -> TradingTransfer:
    """Drive a transfer from whatever state it is in as far as it can go now."""
    transfer.refresh_from_db()
    for _ in range(6):
        before = transfer.state
        if transfer.state in TERMINAL or transfer.state == S.NEEDS_ATTENTION:
            return transfer
        try:
            _advance(port, transfer, timeout)
        except Conflict as exc:
            if exc.code != "transfer_moved":
                raise
            transfer.refresh_from_db()  # another process moved it: carry on from there
            continue
        if transfer.state == before:
            return transfer  # waiting (answer unknown, still within the grace period)
    return transfer


def _advance(port: PlatformPort, transfer: TradingTransfer, timeout: timedelta) -> None:
    """One step from the current state."""
    if transfer.state == S.NEW:
        if transfer.direction == TransferDirection.TO_TRADING:
            _reserve(transfer, timeout)
        elif _mark_sent(transfer):
            _ask_platform(port, transfer, send=True)
    elif transfer.state == S.RESERVED:
        if _reserve_too_old(transfer):
            _fail(transfer, "reservation too close to its timeout to send")
        elif _mark_sent(transfer):
            _ask_platform(port, transfer, send=True)
    elif transfer.state == S.PLATFORM_SENT:
        _ask_platform(port, transfer, send=False)
    elif transfer.state == S.PLATFORM_DONE:
        _settle(transfer)


def _reserve(transfer: TradingTransfer, timeout: timedelta) -> None:
    account = transfer.account
    try:
        with transaction.atomic():
            result = ledger.transfer(
                _key(transfer, "reserve"),
                debit_account=_wallet(account).id,
                credit_account=_clearing(account).id,
                amount=transfer.amount,
                currency=transfer.currency,
                kind="trading.to_trading",
                pending=True,
                timeout=timeout,
                metadata=_metadata(transfer),
                actor=transfer.actor,
                reason="wallet to trading account",
            )
            _move(
                transfer,
                S.RESERVED,
                ledger_pending_id=result.transfer_id,
                reserve_expires_at=result.created_at + timeout,
            )
    except DomainError as exc:
        if isinstance(exc, Conflict) and exc.code == "transfer_moved":
            transfer.refresh_from_db()
            return
        with transaction.atomic():
            why = f"{exc.code}: {exc.message}"
            _move(transfer, S.FAILED, note=why, error=why)
        return
    _step("reserved")


def _metadata(transfer: TradingTransfer) -> dict[str, Any]:
    return {
        "trading_transfer_id": str(transfer.id),
        "server": transfer.account.server,
        "login": transfer.account.login,
        "comment": transfer.comment,
    }


def _reserve_too_old(transfer: TradingTransfer) -> bool:
    expires = transfer.reserve_expires_at
    return expires is not None and clock.now() >= expires - SEND_MARGIN


def _mark_sent(transfer: TradingTransfer) -> bool:
    """Commit PLATFORM_SENT (the recovery point) before anything goes to the platform.

    True when this process won the compare-and-set and so must send the operation itself.
    """
    try:
        with transaction.atomic():
            _move(transfer, S.PLATFORM_SENT, sent_at=clock.now())
    except Conflict:
        transfer.refresh_from_db()
        return False
    _step("sent_marked")
    return True


def _ask_platform(port: PlatformPort, transfer: TradingTransfer, *, send: bool) -> None:
    """Send the balance operation (``send``: once, by the winner of the mark) or look for its
    deal by comment; fail only when the platform answered and has no such deal."""
    account = transfer.account
    op = (
        BalanceOp.DEPOSIT
        if transfer.direction == TransferDirection.TO_TRADING
        else BalanceOp.WITHDRAWAL
    )
    ticket: int | None = None
    if send:
        try:
            ticket = port.balance_operation(account.login, op, transfer.amount, transfer.comment)
        except (ConfirmationLost, PlatformConnectionError) as exc:
            log.warning("trading_transfer_unconfirmed", transfer=str(transfer.id), error=str(exc))
        except PlatformError as exc:
            _fail(transfer, f"platform refused ({exc.code}, retcode {exc.retcode}): {exc}")
            return
        _step("platform_answered")
    looked = True
    if ticket is None:
        looked, ticket = _find_deal(port, transfer)
    if ticket is not None:
        with transaction.atomic():
            _move(transfer, S.PLATFORM_DONE, platform_ticket=ticket)
        _step("platform_done")
        return
    sent_at = transfer.sent_at or transfer.updated_at
    if looked and clock.now() - sent_at >= SENT_GRACE:
        _fail(transfer, "the platform has no deal with this comment: not applied")


def _find_deal(port: PlatformPort, transfer: TradingTransfer) -> tuple[bool, int | None]:
    """(the platform answered, the ticket of the deal with our comment or None)."""
    sent_at = transfer.sent_at or transfer.created_at
    try:
        deal = port.find_balance_deal(
            transfer.account.login, transfer.comment, datetime_to_msc(sent_at) - SEARCH_SKEW_MS
        )
    except PlatformError as exc:
        log.warning("trading_transfer_lookup_failed", transfer=str(transfer.id), error=str(exc))
        return False, None
    if deal is None:
        return True, None
    expected = (
        transfer.amount if transfer.direction == TransferDirection.TO_TRADING else -transfer.amount
    )
    if deal.profit != expected:
        log.error(
            "trading_transfer_amount_differs",
            transfer=str(transfer.id),
            expected=expected,
            found=deal.profit,
        )
    return True, deal.deal


def _fail(transfer: TradingTransfer, why: str) -> None:
    """Release the reservation (if any) and end in FAILED, in one transaction."""
    with transaction.atomic():
        if transfer.ledger_pending_id is not None:
            # PendingResolved / PendingExpired: the ledger's expiry already released it.
            with contextlib.suppress(ledger_errors.PendingResolved, ledger_errors.PendingExpired):
                ledger.void_pending(
                    transfer.ledger_pending_id,
                    _key(transfer, "void"),
                    actor=transfer.actor,
                    reason=why[:200],
                )
        _move(transfer, S.FAILED, note=why, error=why)


def _settle(transfer: TradingTransfer) -> None:
    """The platform has the money moved: make the ledger say so."""
    account = transfer.account
    try:
        with transaction.atomic():
            if transfer.direction == TransferDirection.TO_TRADING:
                assert transfer.ledger_pending_id is not None
                result = ledger.post_pending(
                    transfer.ledger_pending_id,
                    _key(transfer, "post"),
                    actor=transfer.actor,
                    reason=f"platform deal {transfer.platform_ticket}",
                )
            else:
                result = ledger.transfer(
                    _key(transfer, "post"),
                    debit_account=_clearing(account).id,
                    credit_account=_wallet(account).id,
                    amount=transfer.amount,
                    currency=transfer.currency,
                    kind="trading.to_wallet",
                    metadata=_metadata(transfer),
                    actor=transfer.actor,
                    reason=f"platform deal {transfer.platform_ticket}",
                )
            _move(transfer, S.COMPLETED, ledger_posted_id=result.transfer_id)
    except (ledger_errors.PendingExpired, ledger_errors.PendingResolved):
        _settle_late(transfer)


def _settle_late(transfer: TradingTransfer) -> None:
    """The platform confirmed a deposit after its reservation expired: post it from the wallet
    if the money is still there, otherwise hand it to an operator."""
    account = transfer.account
    try:
        with transaction.atomic():
            result = ledger.transfer(
                _key(transfer, "post-late"),
                debit_account=_wallet(account).id,
                credit_account=_clearing(account).id,
                amount=transfer.amount,
                currency=transfer.currency,
                kind="trading.to_trading",
                metadata=_metadata(transfer),
                actor=transfer.actor,
                reason=f"platform deal {transfer.platform_ticket} confirmed after expiry",
            )
            _move(transfer, S.COMPLETED, ledger_posted_id=result.transfer_id, note="posted late")
    except DomainError as exc:
        with transaction.atomic():
            _move(
                transfer,
                S.NEEDS_ATTENTION,
                note=f"deposit applied on the platform after expiry; {exc.message}",
                error=exc.message,
            )


# --- recovery ----------------------------------------------------------------------------------


def stuck_transfers(
    now: datetime | None = None, older_than: timedelta = STUCK_AFTER
) -> list[TradingTransfer]:
    """Transfers in a non-final state untouched for ``older_than``."""
    cutoff = (now or clock.now()) - older_than
    return list(
        TradingTransfer.objects.filter(state__in=ACTIVE, updated_at__lte=cutoff)
        .select_related("account")
        .order_by("updated_at")[:500]
    )


def recover_stuck_transfers(
    port_for: Callable[[str], PlatformPort] | None = None,
    *,
    older_than: timedelta = STUCK_AFTER,
) -> int:
    """Resume or compensate every stuck transfer; return how many reached a final state."""
    stuck = stuck_transfers(older_than=older_than)
    if not stuck:
        return 0
    ports: dict[str, PlatformPort] = {}
    owned: list[PlatformPort] = []

    def get_port(server: str) -> PlatformPort:
        if server not in ports:
            if port_for is not None:
                ports[server] = port_for(server)
            else:
                from brokerdesk.trading.config import build_adapter, platform_servers

                port = build_adapter(platform_servers()[server])
                port.connect()
                owned.append(port)
                ports[server] = port
        return ports[server]

    finished = 0
    try:
        for transfer in stuck:
            try:
                result = resume(get_port(transfer.account.server), transfer)
            except (DomainError, KeyError) as exc:
                log.warning(
                    "trading_transfer_recovery_failed", transfer=str(transfer.id), error=str(exc)
                )
                continue
            finished += result.state in TERMINAL
    finally:
        for port in owned:
            port.disconnect()
    return finished
