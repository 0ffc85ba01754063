"""An IB's commission from a real trade: simulator → bridge → bus → trading ingest →
``trading.deal_closed`` → the accrual consumer → approval → the IB's wallet.

Nothing is built by hand between the client's trade on the (simulated) MT5 server and the
money in the IB's wallet: the login is linked to the client by the clients module's consumer
of ``trading.account_opened``, the deal is stored and announced by the trading module, and
the commission is computed by the partners module from its plan.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

import pytest

from brokerdesk.clients.queries import client_for_login
from brokerdesk.core import clock
from brokerdesk.core.bus.factory import get_bus
from brokerdesk.core.consumers import autodiscover, register, unregister
from brokerdesk.core.worker import drain
from brokerdesk.ledger import queries as ledger_queries
from brokerdesk.ledger import services as ledger
from brokerdesk.partners import accrual, attribution, queries
from brokerdesk.partners.models import Accrual
from brokerdesk.trading import transfers
from brokerdesk.trading.bridge import Bridge, BridgeConfig, MemoryCheckpointStore, stream_name
from brokerdesk.trading.ingest import apply_messages
from brokerdesk.trading.models import TradingDeal
from brokerdesk.trading.platform.simulator_adapter import SimulatorAdapter
from brokerdesk.trading.services import open_trading_account
from tests.partners.conftest import REBATE, chain, plan_for, verified_client
from tests.trading.conftest import make_simulator  # noqa: F401 - the simulator fixture

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_clients_trade_on_the_simulator_pays_the_ib_and_its_master(make_simulator) -> None:  # noqa: F811
    server = f"ib{uuid.uuid4().hex[:6]}"
    sim = make_simulator("--rate", "0", "--tick-seconds", "0", "--traders", "0", "--seed", "5")
    port = SimulatorAdapter(server, port=sim.port)
    port.connect()
    bus = get_bus()
    consumers = autodiscover()
    ingest = register("test.partners.ingest", [stream_name(server)], apply_messages)
    pipeline = [ingest, consumers["clients.trading_logins"], consumers["partners.accrue_deals"]]
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

    def wait_for_accruals(deal: int) -> list[Accrual]:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            drain(bus, pipeline)
            rows = list(Accrual.objects.filter(deal_id=f"{server}:{deal}").order_by("level"))
            if rows:
                return rows
            time.sleep(0.05)
        raise AssertionError(f"no commission for deal {deal}")

    try:
        # Given a sub-IB on a $7-per-lot FX rebate whose master earns 20% of it as override,
        master, sub = chain(2)
        plan_for(sub, {**REBATE, "overrides": [2000]})
        # and a verified client referred by the sub-IB, with a funded MT5 login,
        client = verified_client()
        attribution.request_reassignment(client, sub.pk, by="system:test", reason="referral")
        ledger.transfer(
            f"psp-{client}",
            debit_account=ledger.system_account("psp_clearing", "USD", qualifier="card").id,
            credit_account=ledger.wallet_account(client, "USD").id,
            amount=500_000,
            currency="USD",
            kind="deposit",
        )
        account = open_trading_account(
            port, client_id=str(client), name="Ada Trader", group="real\\standard",
            leverage=100, currency="USD",
        )  # fmt: skip
        drain(bus, pipeline)
        linked = client_for_login(server, account.login)
        assert linked is not None and linked.client_id == client
        moved = transfers.transfer_to_trading(port, account, 300_000, f"{client}-in")
        assert moved.platform_ticket

        # when the client trades one lot of EURUSD and closes it,
        opened = port.control(
            "trade_open", login=account.login, symbol="EURUSD", action=0, volume=10_000
        )
        closed = port.control("trade_close", position=opened["PositionID"])
        rows = wait_for_accruals(closed["Deal"])

        # then the deal is stored once and commissioned under the plan: $5.60 and $1.40,
        assert TradingDeal.objects.filter(server=server, deal=closed["Deal"]).count() == 1
        assert [(r.ib_id, r.level, r.amount) for r in rows] == [
            (sub.pk, 0, 560),
            (master.pk, 1, 140),
        ]
        # the sub-IB can see why (the deal, its volume, the rule version, the computation),
        proof = queries.evidence(
            sub.pk,
            start=clock.now() - timedelta(hours=1),
            end=clock.now() + timedelta(hours=1),
            viewer=sub.pk,
        )
        [deal] = proof.deals
        assert (deal.client_id, deal.volume, deal.symbol) == (client, 10_000, "EURUSD")
        assert proof.total_amount == 560

        # and once approved and paid, the money is in each IB's wallet — exactly once.
        ids = [r.pk for r in rows]
        accrual.approve(ids, by="system:test")
        accrual.make_payable(ids, by="system:test")
        for ib in (sub, master):
            accrual.pay_ib(ib.pk, by="system:test", request_key=f"pay-{ib.pk}")
            accrual.pay_ib(ib.pk, by="system:test", request_key=f"pay-{ib.pk}")
        drain(bus, pipeline)  # a redelivered deal pays nothing twice
        paid = {
            ib.code: ledger_queries.balance(ledger.open_account("ib", str(ib.pk), "USD", "cash").id)
            for ib in (sub, master)
        }
        assert {code: b.posted for code, b in paid.items()} == {sub.code: 560, master.code: 140}
        assert Accrual.objects.filter(deal_id=f"{server}:{closed['Deal']}").count() == 2
        assert ledger_queries.replay_ledger().clean
    finally:
        stop.set()
        thread.join(10)
        port.disconnect()
        unregister("test.partners.ingest")
        bus.close()
