"""Tradable credit mirrored on the trading platform, against the MT5 adapter over the in-repo
fake of the MT5 Manager package (the simulator's engine behind it): credit in on grant, credit
out on unlock and forfeit, our id in the comment, a lost confirmation found by its comment."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from brokerdesk.bonuses import services
from brokerdesk.bonuses.models import Bonus, CreditOpState, PlatformCreditOp
from brokerdesk.trading.platform.mt5_adapter import MT5Adapter
from brokerdesk.trading.platform.port import ConfirmationLost, transfer_id_from_comment
from brokerdesk.trading.services import open_trading_account
from brokerdesk.trading.simulator.engine import Engine
from tests.bonuses.conftest import FINANCE, bucket, campaign, client, consume, deal_message
from tests.trading.fakes import mt5manager as fake_mt5

pytestmark = pytest.mark.django_db
ADDRESS = "bonus-mt5:443"


@pytest.fixture
def port() -> Iterator[MT5Adapter]:
    fake_mt5.SERVERS[ADDRESS] = Engine(name="bonus-mt5", seed=11)
    adapter = MT5Adapter("bonus-mt5", ADDRESS, 1001, "Manager#1", module=fake_mt5)
    adapter.connect()
    yield adapter
    adapter.disconnect()
    fake_mt5.SERVERS.pop(ADDRESS, None)


def credit_on_platform(port: MT5Adapter, login: int) -> int:
    return port.account_state(login).credit


def tradable(client_id: Any, amount: int = 10_000) -> Bonus:
    c = campaign(
        trigger="manual", kind="tradable_credit", fixed_amount=amount, unlock_per_lot=1_000
    )
    outcome = services.grant_manual(
        campaign_id=c.id,
        client_id=client_id,
        amount=amount,
        reason="trade with us",
        by=FINANCE,
        request_key=f"t-{c.id}",
    )
    return Bonus.objects.get(pk=outcome.bonus_id)


def test_a_tradable_credit_is_credited_on_the_platform_and_taken_back_as_it_unlocks(port):
    alice = client()
    account = open_trading_account(
        port,
        client_id=str(alice),
        name="Alice",
        group="real\\standard",
        leverage=100,
        currency="USD",
    )
    bonus = tradable(alice, 10_000)
    assert bonus.login == account.login and bucket(alice, "bonus") == 10_000

    assert services.sync_platform_credit(lambda server: port) == 1
    assert credit_on_platform(port, account.login) == 10_000
    credit_in = PlatformCreditOp.objects.get(direction="in")
    assert transfer_id_from_comment(credit_in.comment, prefix="bn:") == bonus.id  # our bonus id
    assert port.find_balance_deal(account.login, credit_in.comment, 0) is not None

    consume(
        "bonuses.trading", [deal_message(alice, lots=3, server="bonus-mt5", login=account.login)]
    )
    services.sync_platform_credit(lambda server: port)
    assert credit_on_platform(port, account.login) == 7_000 and bucket(alice, "cash") == 3_000

    services.forfeit_manual(bonus.id, reason="abuse", by=FINANCE, request_key="f")
    services.sync_platform_credit(lambda server: port)
    assert credit_on_platform(port, account.login) == 0
    assert set(PlatformCreditOp.objects.values_list("state", flat=True)) == {CreditOpState.DONE}
    assert services.sync_platform_credit(lambda server: port) == 0  # nothing is sent twice


class LosesAnswers:
    """The port, except that the next write is applied but its answer is lost."""

    def __init__(self, inner: MT5Adapter) -> None:
        self.inner = inner
        self.lose = 1

    def balance_operation(self, *args: Any) -> int:
        ticket = self.inner.balance_operation(*args)
        if self.lose:
            self.lose -= 1
            raise ConfirmationLost("timeout")
        return ticket

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_lost_confirmation_is_found_by_its_comment_and_not_sent_again(port):
    alice = client()
    account = open_trading_account(
        port,
        client_id=str(alice),
        name="Alice",
        group="real\\standard",
        leverage=100,
        currency="USD",
    )
    tradable(alice, 5_000)
    flaky = LosesAnswers(port)

    assert services.sync_platform_credit(lambda server: flaky) == 0  # sent, answer lost
    assert PlatformCreditOp.objects.get().state == CreditOpState.SENT
    assert services.sync_platform_credit(lambda server: flaky) == 1  # found by comment

    assert credit_on_platform(port, account.login) == 5_000  # once, not twice
    assert PlatformCreditOp.objects.get().note == "found by comment"


def test_a_credit_waits_for_the_clients_first_live_account(port):
    from tests.bonuses.conftest import outbox

    alice = client()
    bonus = tradable(alice, 4_000)
    assert bonus.login is None and not PlatformCreditOp.objects.exists()

    account = open_trading_account(
        port,
        client_id=str(alice),
        name="Alice",
        group="real\\standard",
        leverage=100,
        currency="USD",
    )
    consume("bonuses.trading", outbox("trading.account_opened"))
    services.sync_platform_credit(lambda server: port)

    bonus.refresh_from_db()
    assert bonus.login == account.login and credit_on_platform(port, account.login) == 4_000
