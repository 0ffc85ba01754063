"""The payment state machines: every transition outside the tables is refused."""

from __future__ import annotations

import pytest

from brokerdesk.core.errors import IllegalTransition
from brokerdesk.payments import states
from brokerdesk.payments.connectors.sandbox import SandboxConnector

TABLES = {
    "deposit": states.DEPOSIT_TRANSITIONS,
    "withdrawal": states.WITHDRAWAL_TRANSITIONS,
    "exception": states.EXCEPTION_TRANSITIONS,
}
ILLEGAL = [
    (name, src, dst)
    for name, table in TABLES.items()
    for src in table
    for dst in table
    if dst not in table[src]
]
LEGAL = [(name, src, dst) for name, table in TABLES.items() for src in table for dst in table[src]]


@pytest.mark.parametrize(("machine", "current", "target"), ILLEGAL)
def test_every_illegal_transition_is_refused_with_the_allowed_ones_named(machine, current, target):
    with pytest.raises(IllegalTransition) as error:
        states.check(TABLES[machine], machine, current, target)

    assert error.value.code == "illegal_transition" and error.value.field == "status"
    assert f"is {current} cannot become {target}" in error.value.message


@pytest.mark.parametrize(("machine", "current", "target"), LEGAL)
def test_every_legal_transition_passes(machine, current, target):
    states.check(TABLES[machine], machine, current, target)


def test_operators_cannot_jump_from_initiated_to_paid_out():
    with pytest.raises(IllegalTransition):
        states.check(states.WITHDRAWAL_TRANSITIONS, "withdrawal", "requested", "paid")
    with pytest.raises(IllegalTransition):
        states.check(states.DEPOSIT_TRANSITIONS, "deposit", "initiated", "reversed")


def test_the_connector_repr_shows_no_secret():
    connector = SandboxConnector(base_url="http://x", api_key="sk_zzz", webhook_secret="whsec_zz")
    assert "sk_zzz" not in repr(connector) and "whsec_zz" not in repr(connector)
