"""Funded accounts: the profit split exact to the cent, once, then the normal withdrawal flow."""

from __future__ import annotations

import pytest

from brokerdesk.clients.models import Client
from brokerdesk.core.errors import Conflict, NotFound, ValidationError
from brokerdesk.core.models import OutboxEvent
from brokerdesk.ledger import queries as ledger_queries
from brokerdesk.payments.models import Withdrawal
from brokerdesk.propfirm import services
from brokerdesk.propfirm.models import Payout, PayoutState, PhaseAccount, PhaseStatus
from brokerdesk.propfirm.rules import BPS
from brokerdesk.trading.platform.port import BalanceOp, to_minor
from tests.payments.conftest import funded, local_psp  # noqa: F401 - the fixture is used
from tests.propfirm.conftest import (
    FUNDED,
    Platform,
    make_product,
    started_account,
    verified_client,
    wallet_cash,
)

pytestmark = pytest.mark.django_db


def win_trade(platform: Platform, account: PhaseAccount) -> dict[str, object]:
    """The trader buys one lot of EURUSD, the market rises, they close: the closing deal."""
    assert account.login is not None
    platform.engine.set_price("EURUSD", 1.10000)
    opened = platform.engine.open_position(account.login, "EURUSD", 0, 10_000)
    platform.engine.set_price("EURUSD", 1.10731)
    closed = platform.engine.close_position(opened["PositionID"])
    return {
        "server": account.server,
        "login": account.login,
        "deal": closed["Deal"],
        "profit": to_minor(closed["Profit"], 2),
        "commission": to_minor(closed["Commission"], 2),
        "storage": to_minor(closed["Storage"], 2),
        "fee": 0,
        "time_msc": closed["TimeMsc"],
    }


def test_a_payout_splits_the_profit_to_the_cent_and_happens_once(platform: Platform):
    client, account = started_account(platform, FUNDED, profit_split_bps=8000)
    assert account.login is not None and account.funded
    closing = win_trade(platform, account)
    services.record_closed_deals([closing])
    profit = platform.balance(account.login) - account.account_size
    assert profit > 0
    cash_before = wallet_cash(client)

    payout = services.request_payout(
        account.pk, client_id=client, request_id="payout-1", by="system:test", port=platform.port
    )
    again = services.request_payout(
        account.pk, client_id=client, request_id="payout-1", by="system:test", port=platform.port
    )

    assert again.pk == payout.pk and Payout.objects.count() == 1
    assert payout.state == PayoutState.PAID and payout.profit == profit
    assert payout.trader_share == profit * 8000 // BPS
    assert payout.trader_share + payout.firm_share == profit
    assert wallet_cash(client) - cash_before == payout.trader_share
    assert platform.balance(account.login) == account.account_size
    expense = services.payout_account("USD")
    assert ledger_queries.balance(expense.id).posted == -payout.trader_share
    event = OutboxEvent.objects.get(type="challenge.payout_paid").payload
    assert event["figures"]["firm_share"] == payout.firm_share
    # the profit taken off the platform is no loss: a reading at the account size is fine
    services.record_equity(account.server, account.login, equity=account.account_size,
                           balance=account.account_size,
                           at_msc=int(closing["time_msc"]) + 1)  # type: ignore[call-overload]  # fmt: skip
    assert PhaseAccount.objects.get(pk=account.pk).status == PhaseStatus.ACTIVE
    with pytest.raises(ValidationError) as error:
        services.request_payout(account.pk, client_id=client, request_id="payout-2",
                                by="system:test", port=platform.port)  # fmt: skip
    assert error.value.code == "no_profit"


def test_only_the_owner_can_ask_for_a_payout_of_a_funded_account(platform: Platform):
    _, account = started_account(platform, FUNDED)
    other, _ = started_account(platform, FUNDED)

    with pytest.raises(NotFound):
        services.request_payout(account.pk, client_id=other, request_id="x", by="system:test",
                                port=platform.port)  # fmt: skip


def test_a_payout_is_refused_from_an_evaluation_account(platform: Platform):
    client, account = started_account(platform)
    platform.port.balance_operation(account.login or 0, BalanceOp.DEPOSIT, 100_00, "x")

    with pytest.raises(Conflict) as error:
        services.request_payout(account.pk, client_id=client, request_id="y", by="system:test",
                                port=platform.port)  # fmt: skip
    assert error.value.code == "not_funded"


def test_the_traders_share_leaves_through_the_normal_withdrawal_flow(platform, local_psp):  # noqa: F811
    product = make_product(FUNDED, profit_split_bps=9000)
    client = verified_client()
    deposit = funded(local_psp, Client.objects.get(pk=client), 200_00)
    challenge = services.purchase_challenge(client, product.pk, request_id="buy-w",
                                            by="system:test")  # fmt: skip
    account = services.open_phase_account(
        PhaseAccount.objects.get(challenge=challenge).pk, port=platform.port
    )
    services.record_closed_deals([win_trade(platform, account)])

    payout = services.request_payout(account.pk, client_id=client, request_id="payout-w",
                                     by="system:test", method_id=deposit.method_id,
                                     port=platform.port)  # fmt: skip

    withdrawal = Withdrawal.objects.get(pk=payout.withdrawal_id)
    assert withdrawal.amount == payout.trader_share and withdrawal.client_id == client
    assert withdrawal.status in ("approved", "pending_approval")
    assert wallet_cash(client) == 200_00 - product.price  # the share is locked for the payout
