"""DESIGN §4 against the simulator: wallet → MT5, a trading loss, MT5 → wallet.

The platform's events travel the real path: simulator → bridge → bus → ingest consumer →
deals and the account summary read model.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

import pytest

from brokerdesk.core import clock
from brokerdesk.core.bus.factory import get_bus
from brokerdesk.core.consumers import register, unregister
from brokerdesk.core.worker import drain
from brokerdesk.ledger import queries as ledger_queries
from brokerdesk.ledger import services as ledger
from brokerdesk.trading import transfers
from brokerdesk.trading.bridge import Bridge, BridgeConfig, MemoryCheckpointStore, stream_name
from brokerdesk.trading.ingest import apply_messages
from brokerdesk.trading.models import AccountSummary, TradingDeal, TransferState
from brokerdesk.trading.platform.port import DealEntry
from brokerdesk.trading.platform.simulator_adapter import SimulatorAdapter
from brokerdesk.trading.reconciliation import reconcile_platform_clearing
from brokerdesk.trading.services import open_trading_account

pytestmark = pytest.mark.django_db(transaction=True)


def test_deposit_transfer_loss_and_transfer_back(make_simulator) -> None:  # type: ignore[no-untyped-def]
    server = f"mf{uuid.uuid4().hex[:6]}"
    sim = make_simulator("--rate", "0", "--tick-seconds", "0", "--traders", "0", "--seed", "11")
    port = SimulatorAdapter(server, port=sim.port)
    port.connect()
    bus = get_bus()
    spec = register("test.trading.moneyflow", [stream_name(server)], apply_messages)
    bridge = Bridge(
        server,
        SimulatorAdapter(server, port=sim.port),
        bus.publish,
        MemoryCheckpointStore(),
        BridgeConfig(batch_wait=0.02, backoff_initial=0.05),
    )
    stop = threading.Event()
    thread = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
    thread.start()

    def ingest_until(ticket: int) -> AccountSummary:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            drain(bus, [spec])
            row = AccountSummary.objects.filter(server=server, login=account.login).first()
            if row is not None and row.last_deal_ticket >= ticket:
                return row
            time.sleep(0.05)
        raise AssertionError(f"deal {ticket} never reached the read model")

    def wallet() -> tuple[int, int]:
        b = ledger_queries.balance(ledger.wallet_account(client, "USD").id)
        return b.posted, b.available

    try:
        # Given a client whose card deposit of $1,000 is in the wallet, and an MT5 login,
        client = f"client-{uuid.uuid4().hex[:8]}"
        ledger.transfer(
            f"psp-{client}",
            debit_account=ledger.system_account("psp_clearing", "USD", qualifier="card").id,
            credit_account=ledger.wallet_account(client, "USD").id,
            amount=100_000,
            currency="USD",
            kind="deposit",
        )
        account = open_trading_account(
            port, client_id=client, name="Ada Trader", group="real\\standard", leverage=100,
            currency="USD",
        )  # fmt: skip
        assert wallet() == (100_000, 100_000)

        # when $600 go to MT5,
        t1 = transfers.transfer_to_trading(port, account, 60_000, f"{client}-t1")
        assert t1.state == TransferState.COMPLETED
        assert wallet() == (40_000, 40_000)
        assert port.account_state(account.login).balance == 60_000
        summary = ingest_until(t1.platform_ticket or 0)
        assert (summary.balance, summary.equity) == (60_000, 60_000)

        # the client loses $50 trading (0.1 lot EURUSD: -$49.30 price, -$0.35 commission per side),
        opened = port.control(
            "trade_open", login=account.login, symbol="EURUSD", action=0, volume=1_000
        )
        ask_points = round(opened["Price"] * 10**5)
        port.control("set_price", symbol="EURUSD", bid=(ask_points - 493) / 10**5)
        closed = port.control("trade_close", position=opened["PositionID"])
        state = port.account_state(account.login)
        assert (state.balance, state.equity) == (55_000, 55_000)
        summary = ingest_until(closed["Deal"])
        assert (summary.balance, summary.equity, summary.open_pl) == (55_000, 55_000, 0)
        # and the wallet did not move;
        assert wallet() == (40_000, 40_000)
        out = TradingDeal.objects.get(server=server, deal=closed["Deal"])
        assert out.entry == DealEntry.ENTRY_OUT and (out.profit, out.commission) == (-4_930, -35)

        # then $200 come back: wallet +200, MT5 -200.
        t2 = transfers.transfer_to_wallet(port, account, 20_000, f"{client}-t2")
        assert t2.state == TransferState.COMPLETED
        assert wallet() == (60_000, 60_000)
        assert port.account_state(account.login).balance == 35_000
        summary = ingest_until(t2.platform_ticket or 0)
        assert (summary.balance, summary.equity) == (35_000, 35_000)

        # The ledger replays clean and reconciles with the platform's balance deals.
        assert ledger_queries.replay_ledger().clean
        clearing = ledger.system_account("platform_clearing", "USD", qualifier=server)
        assert ledger_queries.balance(clearing.id).posted == 40_000  # 600 in, 200 out
        run = reconcile_platform_clearing(
            port,
            currency="USD",
            start=clock.now() - timedelta(hours=1),
            end=clock.now() + timedelta(hours=1),
        )
        assert (run.matched, run.exceptions) == (2, 0)
    finally:
        stop.set()
        thread.join(10)
        port.disconnect()
        unregister("test.trading.moneyflow")
        bus.close()
