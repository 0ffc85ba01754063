"""Model-based test of the ledger's invariants with Hypothesis.

A reference model predicts each command's outcome; after every step the invariants hold:
every transfer balances, no account breaks its flags, replay equals the live balances, and
repeating a command with its idempotency key changes nothing.
"""

from __future__ import annotations

import pytest
from django.db import connection
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from brokerdesk.core.errors import DomainError
from brokerdesk.ledger import errors, queries, services
from brokerdesk.ledger.models import LedgerAccount, Transfer

from .conftest import unique

amounts = st.integers(min_value=1, max_value=5_000)


class LedgerMachine(RuleBasedStateMachine):
    """Three wallets, a PSP clearing account and a model of what each should hold."""

    @initialize()
    def setup(self) -> None:
        self.wallets = [services.wallet_account(unique("client"), "USD") for _ in range(3)]
        self.clearing = services.open_account("system", unique("psp"), "USD", "clearing")
        self.posted = {w.id: 0 for w in self.wallets}
        self.reserved = {w.id: 0 for w in self.wallets}
        self.pendings: list[tuple[object, object, int]] = []  # (pending id, wallet id, amount)
        self.history: list[tuple[services.TransferRequest, services.TransferResult]] = []

    def _available(self, wallet_id: object) -> int:
        return self.posted[wallet_id] - self.reserved[wallet_id]

    def _post(self, request: services.TransferRequest) -> services.TransferResult | DomainError:
        try:
            result = services.post_transfer(request)
        except DomainError as exc:
            return exc
        self.history.append((request, result))
        return result

    @rule(i=st.integers(0, 2), amount=amounts)
    def deposit(self, i: int, amount: int) -> None:
        w = self.wallets[i]
        outcome = self._post(
            services.TransferRequest(
                unique("dep"),
                "deposit",
                "USD",
                (services.debit(self.clearing.id, amount), services.credit(w.id, amount)),
            )
        )
        assert isinstance(outcome, services.TransferResult)
        self.posted[w.id] += amount

    @rule(i=st.integers(0, 2), amount=amounts)
    def withdraw(self, i: int, amount: int) -> None:
        w = self.wallets[i]
        outcome = self._post(
            services.TransferRequest(
                unique("wd"),
                "withdrawal",
                "USD",
                (services.debit(w.id, amount), services.credit(self.clearing.id, amount)),
            )
        )
        if amount <= self._available(w.id):
            assert isinstance(outcome, services.TransferResult)
            self.posted[w.id] -= amount
        else:
            assert isinstance(outcome, errors.InsufficientFunds)

    @rule(src=st.integers(0, 2), dst=st.integers(0, 2), amount=amounts)
    def move(self, src: int, dst: int, amount: int) -> None:
        a, b = self.wallets[src], self.wallets[dst]
        outcome = self._post(
            services.TransferRequest(
                unique("mv"),
                "internal",
                "USD",
                (services.debit(a.id, amount), services.credit(b.id, amount)),
            )
        )
        if src == dst:
            assert isinstance(outcome, DomainError) and outcome.code == "same_account"
        elif amount <= self._available(a.id):
            assert isinstance(outcome, services.TransferResult)
            self.posted[a.id] -= amount
            self.posted[b.id] += amount
        else:
            assert isinstance(outcome, errors.InsufficientFunds)

    @rule(i=st.integers(0, 2), amount=amounts)
    def hold(self, i: int, amount: int) -> None:
        w = self.wallets[i]
        try:
            result = services.place_hold(unique("hold"), account=w, amount=amount, reason="test")
        except errors.InsufficientFunds:
            assert amount > self._available(w.id)
            return
        assert amount <= self._available(w.id)
        self.reserved[w.id] += amount
        self.pendings.append((result.transfer_id, w.id, amount))

    @precondition(lambda self: bool(self.pendings))
    @rule(data=st.data(), post=st.booleans())
    def resolve(self, data: st.DataObject, post: bool) -> None:
        index = data.draw(st.integers(0, len(self.pendings) - 1))
        pending_id, wallet_id, amount = self.pendings.pop(index)
        if post:
            services.post_pending(pending_id, unique("post"))  # type: ignore[arg-type]
            self.posted[wallet_id] -= amount
        else:
            services.void_pending(pending_id, unique("void"))  # type: ignore[arg-type]
        self.reserved[wallet_id] -= amount

    @precondition(lambda self: bool(self.history))
    @rule(data=st.data())
    def repeat(self, data: st.DataObject) -> None:
        request, first = data.draw(st.sampled_from(self.history))
        count = Transfer.objects.count()
        again = services.post_transfer(request)
        assert again.replayed and again.transfer_id == first.transfer_id
        assert Transfer.objects.count() == count

    @invariant()
    def balances_match_the_model(self) -> None:
        if not hasattr(self, "wallets"):
            return
        for w in self.wallets:
            b = queries.balance(w.id)
            assert b.posted == self.posted[w.id]
            assert b.pending_out == self.reserved[w.id]
            assert b.available >= 0

    @invariant()
    def every_account_keeps_its_flags(self) -> None:
        for a in LedgerAccount.objects.filter(no_negative=True):
            assert a.debits_posted + a.debits_pending <= a.credits_posted

    def teardown(self) -> None:
        if hasattr(self, "wallets"):
            report = queries.replay_ledger()
            assert report.clean, report.differences


@pytest.mark.django_db
def test_ledger_invariants_hold_under_random_commands():
    run = LedgerMachine.TestCase()
    run.settings = settings(
        max_examples=20 if connection.vendor == "sqlite" else 12,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    run.runTest()
