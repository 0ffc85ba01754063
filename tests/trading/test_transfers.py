"""Wallet ↔ trading transfers against the simulator: the saga, crashes between its steps,
recovery by comment, idempotency, and reconciliation of the ledger with the platform."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest

from brokerdesk.core import clock
from brokerdesk.core.errors import Conflict
from brokerdesk.ledger import queries as ledger_queries
from brokerdesk.ledger import services as ledger
from brokerdesk.trading import transfers
from brokerdesk.trading.models import TradingAccount, TradingTransfer, TransferState
from brokerdesk.trading.platform.port import BalanceOp, transfer_comment
from brokerdesk.trading.platform.simulator_adapter import SimulatorAdapter
from brokerdesk.trading.reconciliation import reconcile_platform_clearing
from brokerdesk.trading.services import open_trading_account

pytestmark = pytest.mark.django_db
SERVER = "sim-transfers"
_n = itertools.count()


class Crash(Exception):
    """Stands for the process dying at a recovery point."""


@pytest.fixture
def port(contract_simulator) -> Iterator[SimulatorAdapter]:  # type: ignore[no-untyped-def]
    adapter = SimulatorAdapter(SERVER, port=contract_simulator.port, write_timeout=1.0)
    adapter.connect()
    adapter.control("faults", lose=0, lose_next=0, delay_ms=0)
    yield adapter
    adapter.control("faults", lose=0, lose_next=0, delay_ms=0)
    adapter.disconnect()


@pytest.fixture
def crash_at(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    def arm(step: str) -> None:
        def hook(name: str) -> None:
            if name == step:
                raise Crash(step)

        monkeypatch.setattr(transfers, "step_hook", hook)

    yield arm
    monkeypatch.setattr(transfers, "step_hook", transfers._no_hook)


def funded_account(port: SimulatorAdapter, wallet: int = 100_000) -> TradingAccount:
    """A client with ``wallet`` cents in the wallet (a posted deposit) and an MT5 login."""
    client = f"client-{next(_n)}-{uuid.uuid4().hex[:6]}"
    if wallet:
        ledger.transfer(
            f"dep-{client}",
            debit_account=ledger.system_account("psp_clearing", "USD", qualifier="test").id,
            credit_account=ledger.wallet_account(client, "USD").id,
            amount=wallet,
            currency="USD",
            kind="deposit",
        )
    return open_trading_account(
        port, client_id=client, name="Test Client", group="real\\standard", leverage=100,
        currency="USD",
    )  # fmt: skip


def wallet_balance(account: TradingAccount) -> tuple[int, int]:
    """(posted, available) of the client's USD wallet."""
    b = ledger_queries.balance(ledger.wallet_account(account.client_id, "USD").id)
    return b.posted, b.available


def platform_balance(port: SimulatorAdapter, account: TradingAccount) -> int:
    return port.account_state(account.login).balance


def recover(port: SimulatorAdapter) -> int:
    return transfers.recover_stuck_transfers(lambda server: port, older_than=timedelta(0))


def test_transfer_to_trading_reserves_sends_with_the_id_in_the_comment_and_posts(port) -> None:
    account = funded_account(port)
    t = transfers.transfer_to_trading(port, account, 60_000, "req-1-" + account.client_id)
    assert t.state == TransferState.COMPLETED
    assert wallet_balance(account) == (40_000, 40_000)
    assert platform_balance(port, account) == 60_000
    deal = port.find_balance_deal(account.login, transfer_comment(t.id), 0)
    assert deal is not None and deal.deal == t.platform_ticket and deal.profit == 60_000
    assert [h["to"] for h in t.history] == [
        "new", "reserved", "platform_sent", "platform_done", "completed",
    ]  # fmt: skip


def test_the_same_request_key_moves_money_once(port) -> None:
    account = funded_account(port)
    key = "req-idem-" + account.client_id
    first = transfers.transfer_to_trading(port, account, 10_000, key)
    again = transfers.transfer_to_trading(port, account, 10_000, key)
    assert first.id == again.id and again.state == TransferState.COMPLETED
    assert platform_balance(port, account) == 10_000
    assert wallet_balance(account)[0] == 90_000
    with pytest.raises(Conflict):
        transfers.transfer_to_trading(port, account, 20_000, key)


def test_not_enough_in_the_wallet_fails_before_the_platform(port) -> None:
    account = funded_account(port, wallet=5_000)
    t = transfers.transfer_to_trading(port, account, 6_000, "req-poor-" + account.client_id)
    assert t.state == TransferState.FAILED and "insufficient" in t.error.lower()
    assert platform_balance(port, account) == 0
    assert wallet_balance(account) == (5_000, 5_000)


@pytest.mark.parametrize(
    ("step", "platform_after"),
    [
        ("reserved", 30_000),  # crash before anything was sent: recovery sends and completes
        ("sent_marked", 0),  # marked but never sent: recovery finds no deal, releases
        ("platform_answered", 30_000),  # applied, answer lost with the crash: found by comment
        ("platform_done", 30_000),  # confirmed, not posted yet: recovery posts
    ],
)
def test_a_crash_between_steps_ends_fully_moved_or_fully_back(
    port, crash_at, monkeypatch, step: str, platform_after: int
) -> None:
    account = funded_account(port)
    crash_at(step)
    with pytest.raises(Crash):
        transfers.transfer_to_trading(
            port, account, 30_000, f"req-crash-{step}-{account.client_id}"
        )
    stuck = TradingTransfer.objects.get(account=account)
    assert stuck.state not in transfers.TERMINAL
    assert wallet_balance(account)[1] == 70_000  # reserved meanwhile
    # When the periodic recovery job runs (past the grace period for a sent operation),
    monkeypatch.setattr(transfers, "step_hook", transfers._no_hook)
    monkeypatch.setattr(transfers, "SENT_GRACE", timedelta(0))
    assert recover(port) == 1
    done = TradingTransfer.objects.get(account=account)
    # then the money is fully on one side, never in between.
    assert platform_balance(port, account) == platform_after
    if platform_after:
        assert done.state == TransferState.COMPLETED
        assert wallet_balance(account) == (70_000, 70_000)
    else:
        assert done.state == TransferState.FAILED
        assert wallet_balance(account) == (100_000, 100_000)
    assert recover(port) == 0  # nothing left to do
    assert platform_balance(port, account) == platform_after


def test_a_lost_confirmation_is_settled_by_finding_the_deal_by_comment(port) -> None:
    account = funded_account(port)
    port.control("faults", lose_next=1)
    t = transfers.transfer_to_trading(port, account, 25_000, "req-lost-" + account.client_id)
    assert t.state == TransferState.COMPLETED and t.platform_ticket
    assert platform_balance(port, account) == 25_000
    assert wallet_balance(account)[0] == 75_000


def test_a_reservation_past_its_timeout_is_released_not_sent(port, crash_at, monkeypatch) -> None:
    account = funded_account(port)
    crash_at("reserved")
    with pytest.raises(Crash):
        transfers.transfer_to_trading(port, account, 40_000, "req-old-" + account.client_id)
    monkeypatch.setattr(transfers, "step_hook", transfers._no_hook)
    later = clock.now() + transfers.RESERVE_TIMEOUT
    with clock.frozen(later):
        assert ledger.expire_pending_transfers() == 1  # the ledger's own sweep ran first
        assert recover(port) == 1
    t = TradingTransfer.objects.get(account=account)
    assert t.state == TransferState.FAILED
    assert platform_balance(port, account) == 0
    assert wallet_balance(account) == (100_000, 100_000)


def test_transfer_to_wallet_withdraws_on_the_platform_first_then_posts(port) -> None:
    account = funded_account(port)
    transfers.transfer_to_trading(port, account, 50_000, "req-in-" + account.client_id)
    t = transfers.transfer_to_wallet(port, account, 20_000, "req-out-" + account.client_id)
    assert t.state == TransferState.COMPLETED
    assert platform_balance(port, account) == 30_000
    assert wallet_balance(account)[0] == 70_000
    refused = transfers.transfer_to_wallet(port, account, 90_000, "req-big-" + account.client_id)
    assert refused.state == TransferState.FAILED and "platform_no_money" in refused.error
    assert platform_balance(port, account) == 30_000 and wallet_balance(account)[0] == 70_000


def test_a_crash_after_the_platform_withdrawal_is_posted_by_recovery(
    port, crash_at, monkeypatch
) -> None:
    account = funded_account(port)
    transfers.transfer_to_trading(port, account, 50_000, "req-in2-" + account.client_id)
    crash_at("platform_answered")
    with pytest.raises(Crash):
        transfers.transfer_to_wallet(port, account, 10_000, "req-out2-" + account.client_id)
    assert platform_balance(port, account) == 40_000 and wallet_balance(account)[0] == 50_000
    monkeypatch.setattr(transfers, "step_hook", transfers._no_hook)
    assert recover(port) == 1
    assert wallet_balance(account)[0] == 60_000


def test_illegal_transitions_are_refused(port) -> None:
    account = funded_account(port)
    t = transfers.transfer_to_trading(port, account, 1_000, "req-ill-" + account.client_id)
    with pytest.raises(Conflict):  # IllegalTransition is a Conflict
        transfers._move(t, TransferState.RESERVED)


def test_reconciliation_is_clean_then_flags_each_tampered_side(port) -> None:
    account = funded_account(port)
    transfers.transfer_to_trading(port, account, 40_000, "req-r1-" + account.client_id)
    t2 = transfers.transfer_to_trading(port, account, 5_000, "req-r2-" + account.client_id)
    transfers.transfer_to_wallet(port, account, 10_000, "req-r3-" + account.client_id)
    start, end = clock.now() - timedelta(hours=1), clock.now() + timedelta(hours=1)
    clean = reconcile_platform_clearing(port, currency="USD", start=start, end=end)
    assert (clean.exceptions, clean.matched) == (0, 3)

    # Tamper with the platform: a balance deal nobody asked for, and a second deal on t2.
    stray = transfer_comment(uuid.uuid4())
    port.balance_operation(account.login, BalanceOp.DEPOSIT, 777, stray)
    port.balance_operation(account.login, BalanceOp.DEPOSIT, 100, t2.comment)
    # Tamper with the ledger: a clearing entry with no platform deal behind it.
    ghost = uuid.uuid4()
    ledger.transfer(
        f"trading.transfer:{ghost}:post",
        debit_account=ledger.wallet_account(account.client_id, "USD").id,
        credit_account=ledger.system_account("platform_clearing", "USD", qualifier=SERVER).id,
        amount=1_234,
        currency="USD",
        kind="trading.to_trading",
    )
    run = reconcile_platform_clearing(port, currency="USD", start=start, end=end)
    found = {(e.kind, e.comment): e for e in run.items.all()}
    assert run.exceptions == 3 and run.matched == 2
    assert found[("missing_in_ledger", stray)].platform_amount == 777
    mismatch = found[("amount_mismatch", t2.comment)]
    assert (mismatch.ledger_amount, mismatch.platform_amount) == (5_000, 5_100)
    missing = found[("missing_on_platform", transfer_comment(ghost))]
    assert missing.ledger_amount == 1_234


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_requests_with_one_key_move_money_once(contract_simulator) -> None:  # type: ignore[no-untyped-def]
    import threading

    from django.db import connection

    ports = [SimulatorAdapter(SERVER, port=contract_simulator.port) for _ in range(2)]
    for p in ports:
        p.connect()
    try:
        account = funded_account(ports[0])
        key = "req-race-" + account.client_id
        barrier = threading.Barrier(2)
        results: list[object] = []

        def go(p: SimulatorAdapter) -> None:
            try:
                barrier.wait()
                results.append(transfers.transfer_to_trading(p, account, 15_000, key))
            except Exception as exc:  # collected and asserted below
                results.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=go, args=(p,)) for p in ports]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert all(isinstance(r, TradingTransfer) for r in results), results
        assert {r.id for r in results} == {  # type: ignore[attr-defined]
            TradingTransfer.objects.get(request_key=key).id
        }
        transfer = TradingTransfer.objects.get(request_key=key)
        if transfer.state != TransferState.COMPLETED:  # the loser may have stopped early
            transfers.resume(ports[0], transfer)
        assert platform_balance(ports[0], account) == 15_000
        assert wallet_balance(account) == (85_000, 85_000)
        assert len(port_deals := ports[0].deals(account.login, 0, 2**62)) == 1, port_deals
    finally:
        for p in ports:
            p.disconnect()
