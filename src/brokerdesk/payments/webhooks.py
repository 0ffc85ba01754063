"""PSP webhooks, many per transaction: verify, record once in the inbox, process.

``receive_webhook`` verifies the signature in the caller's thread, then hands the event to a
group: concurrent callers queue their events and wait, and a processor thread takes
everything queued (up to ``MAX_BATCH``) into ONE transaction — group commit. Each caller
still answers only after its event is committed, with the same outcome as one-by-one
processing, so the PSP's retry logic is unchanged.

In a batch, every deposit confirmation (``deposit.succeeded`` of a deposit no other event of
the batch names) goes through the set-based path: the inbox rows are inserted by one
statement (``ON CONFLICT DO NOTHING``: a duplicate delivery, in the batch or not, is a
``duplicate``), the deposits are locked in one query, all ledger chains go to one
``ledger.post_batch`` (one lock of the PSP clearing account per batch, not per webhook), and
the deposit updates, timeline steps, audit entries, outbox events and inbox outcomes are
written in bulk. Every other event (failures, chargebacks, payouts, several events of one
deposit) is processed one by one, in arrival order, each in a savepoint.

A confirmation that fails (an illegal transition, a ledger refusal) raises for its caller
only; its inbox row is removed so the PSP's retry is processed. Inside a transaction (tests,
callers with their own ``atomic``) and on SQLite (one writer) events are processed where they
are received, through the same batch code.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from django.db.models import Count, Q

from brokerdesk.core import audit, bulk, clock
from brokerdesk.core.errors import DomainError
from brokerdesk.core.events import emit_many
from brokerdesk.core.ids import new_id
from brokerdesk.core.metrics import IDEMPOTENT_REPLAYS
from brokerdesk.ledger import errors as ledger_errors
from brokerdesk.ledger import services as ledger
from brokerdesk.payments import connectors, services, states
from brokerdesk.payments.connectors.base import NormalizedEvent
from brokerdesk.payments.events import DepositConfirmed
from brokerdesk.payments.models import Deposit, InboxEvent, PaymentEvent

Outcome = str | BaseException

MAX_BATCH = 500


def receive_webhook(provider: str, body: bytes, headers: Any) -> str:
    """Verify a PSP webhook, record it once in the inbox and process it; return the outcome.

    A delivery whose (provider, event id) is already in the inbox is a ``duplicate`` and
    changes nothing. The signature is checked before anything is read or written.
    """
    event = connectors.get(provider).parse_webhook(body, headers)
    return receive(event)


def receive(event: NormalizedEvent) -> str:
    """Process one verified event, grouped with concurrent ones where that is safe."""
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        return _GROUP.submit(event)
    (outcome,) = process_events([event])
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


class _Group:
    """Group commit of webhook events: callers queue events and wait; one processor thread
    (started on first use, with its own connection, closed when idle) runs the batches."""

    def __init__(self, max_batch: int = MAX_BATCH, idle_s: float = 0.5) -> None:
        self.max_batch = max_batch
        self.idle_s = idle_s
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.batches = 0

    def submit(self, event: NormalizedEvent, timeout: float = 120.0) -> str:
        """Queue ``event``; return its outcome once its batch has committed (or raise)."""
        future: Future[str] = Future()
        self._queue.put((event, future))
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="payments-webhooks", daemon=True
                )
                self._thread.start()
        return future.result(timeout)

    def stop(self) -> None:
        """Finish what is queued and stop the processor thread (tests, shutdown)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and thread.is_alive():
            self._queue.put(_STOP)
            thread.join()

    def _loop(self) -> None:
        try:
            while True:
                try:
                    first = self._queue.get(timeout=self.idle_s)
                except queue.Empty:
                    connection.close()  # idle: give the connection back
                    first = self._queue.get()
                if first is _STOP:
                    return
                batch, stopping = [first], False
                while len(batch) < self.max_batch:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stopping = True
                        break
                    batch.append(item)
                self._run(batch)
                if stopping:
                    return
        finally:
            connection.close()

    def _run(self, batch: list[tuple[NormalizedEvent, Future[str]]]) -> None:
        try:
            outcomes = process_events([event for event, _ in batch])
        except Exception as exc:  # the whole batch failed (database down): tell everyone
            for _, future in batch:
                future.set_exception(exc)
            return
        self.batches += 1
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


_STOP = object()
_GROUP = _Group()


def stop_processor() -> None:
    """Stop the webhook processor thread (it restarts on the next webhook)."""
    _GROUP.stop()


# ----------------------------------------------------------------------------- the batch


def process_events(events: Sequence[NormalizedEvent]) -> list[Outcome]:
    """Process verified events in one transaction; each gets its outcome or its error."""
    outcomes: list[Outcome | None] = [None] * len(events)
    first: dict[tuple[str, str], int] = {}
    twins: list[tuple[int, int]] = []
    for i, event in enumerate(events):
        key = (event.provider, event.event_id[:200])
        if key in first:
            twins.append((i, first[key]))
        else:
            first[key] = i
    unique = sorted(first.values())
    named: dict[tuple[str, str], int] = {}
    for i in unique:
        named_key = (events[i].provider, events[i].reference)
        named[named_key] = named.get(named_key, 0) + 1
    fast = [
        i
        for i in unique
        if events[i].kind == "deposit.succeeded"
        and events[i].reference
        and named[(events[i].provider, events[i].reference)] == 1
    ]
    fast_set = set(fast)
    with transaction.atomic():
        if fast:
            for i, outcome in zip(fast, _confirm_batch([events[i] for i in fast]), strict=True):
                outcomes[i] = outcome
        for i in unique:
            if i not in fast_set:
                outcomes[i] = _one(events[i])
    for i, original in twins:
        earlier = outcomes[original]
        if isinstance(earlier, BaseException):
            outcomes[i] = earlier
        else:
            IDEMPOTENT_REPLAYS.labels(kind="psp_webhook").inc()
            outcomes[i] = "duplicate"
    return [o if o is not None else "ignored" for o in outcomes]


def _one(event: NormalizedEvent) -> Outcome:
    """One event the one-by-one way, in a savepoint (its failure is its own)."""
    try:
        with transaction.atomic():
            return services.receive_one(event)
    except DomainError as exc:
        return exc


@dataclass
class _Confirming:
    """A confirmation under way in a batch."""

    index: int
    event: NormalizedEvent
    deposit: Deposit
    fee: int
    hold: str
    unit: list[ledger.Request]
    before: str = ""


def _confirm_batch(events: list[NormalizedEvent]) -> list[Outcome]:
    """Claim and confirm many ``deposit.succeeded`` events (distinct deposits) set-based."""
    outcomes: list[Outcome | None] = [None] * len(events)
    claimed = _claim(events)
    for i in range(len(events)):
        if claimed[i] is None:
            IDEMPOTENT_REPLAYS.labels(kind="psp_webhook").inc()
            outcomes[i] = "duplicate"
    todo = [i for i in range(len(events)) if claimed[i] is not None]
    deposits = _lock_deposits([events[i] for i in todo])
    counts = _hold_counts({d.client_id for d in deposits.values()})
    accounts = _Accounts()
    accounts.prefetch(list(deposits.values()))
    work: list[_Confirming] = []
    for i in todo:
        event = events[i]
        d = deposits.get((event.provider, event.reference))
        if d is None:
            outcomes[i] = _unmatched(event)
            continue
        if d.status in ("confirmed", "held", "reversed", "failed"):
            outcomes[i] = f"already_{d.status}"
            continue
        if event.amount != d.amount or event.currency != d.currency:
            outcomes[i] = _amount_mismatch(d, event)
            continue
        if services.converts(d):  # paid in another currency: the one-by-one chain
            outcomes[i] = _confirm_alone(d, event)
            continue
        fee = services.deposit_fee(d.amount)
        seen, recent = counts.get(d.client_id, (0, 0))
        hold = services.hold_reason_for(d, seen, recent)
        try:
            states.check(
                states.DEPOSIT_TRANSITIONS, "deposit", d.status, "held" if hold else "confirmed"
            )
        except DomainError as exc:
            outcomes[i] = exc
            continue
        counts[d.client_id] = (seen + 1, recent + 1)
        work.append(_Confirming(i, event, d, fee, hold, _chain(d, event, fee, hold, accounts)))
    results = ledger.post_batch([c.unit for c in work]) if work else []
    done: list[_Confirming] = []
    for c, unit_results in zip(work, results, strict=True):
        failure = _first_failure(unit_results)
        if failure is not None:
            outcomes[c.index] = failure
            continue
        posted = [r for r in unit_results if isinstance(r, ledger.TransferResult)]
        _apply(c, posted)
        outcomes[c.index] = "held" if c.hold else "confirmed"
        done.append(c)
    _write(done)
    failed = [claimed[i] for i, o in enumerate(outcomes) if isinstance(o, BaseException)]
    if failed:  # a retry of these must be processed: forget them
        InboxEvent.objects.filter(pk__in=failed).delete()
    bulk.update(
        InboxEvent,
        ["outcome"],
        [
            InboxEvent(id=claimed[i], outcome=str(o)[:60])
            for i, o in enumerate(outcomes)
            if claimed[i] is not None and isinstance(o, str)
        ],
    )
    return [o if o is not None else "ignored" for o in outcomes]


def _confirm_alone(d: Deposit, event: NormalizedEvent) -> Outcome:
    """Confirm one deposit of the batch through ``services.confirm_deposit`` (a converting
    deposit), in a savepoint: its failure is its own."""
    try:
        with transaction.atomic():
            return services.confirm_deposit(d, event)
    except DomainError as exc:
        return exc


_PG_CLAIM = (
    "INSERT INTO payments_inboxevent "
    "(id, provider, event_id, kind, reference, payload, received_at, outcome) "
    "SELECT i, p, e, k, r, j::jsonb, t, '' FROM unnest(%s::uuid[], %s::varchar[], "
    "%s::varchar[], %s::varchar[], %s::varchar[], %s::text[], %s::timestamptz[]) "
    "AS u(i, p, e, k, r, j, t) "
    "ON CONFLICT (provider, event_id) DO NOTHING RETURNING id"
)


def _claim(events: list[NormalizedEvent]) -> list[UUID | None]:
    """Insert the events' inbox rows (unique on provider + event id); the new rows' ids, or
    ``None`` where the event was already there."""
    if connection.vendor != "postgresql":
        return [services.inbox_insert(e) for e in events]
    ids = [new_id() for _ in events]
    now = clock.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _PG_CLAIM,
            [
                ids,
                [e.provider for e in events],
                [e.event_id[:200] for e in events],
                [e.kind for e in events],
                [e.reference[:64] for e in events],
                [bulk.to_json(dict(e.raw)) for e in events],
                [now] * len(events),
            ],
        )
        inserted = {row[0] for row in cursor.fetchall()}
    return [i if i in inserted else None for i in ids]


def _lock_deposits(events: list[NormalizedEvent]) -> dict[tuple[str, str], Deposit]:
    """Lock the events' deposits (in primary-key order: no deadlock between batches)."""
    by_provider: dict[str, list[str]] = {}
    for e in events:
        by_provider.setdefault(e.provider, []).append(e.reference)
    query = Q()
    for provider, references in by_provider.items():
        query |= Q(provider=provider, reference__in=references)
    if not by_provider:
        return {}
    rows = Deposit.objects.select_for_update().filter(query).order_by("id")
    return {(d.provider, d.reference): d for d in rows}


def _hold_counts(client_ids: set[UUID]) -> dict[UUID, tuple[int, int]]:
    """Per client: confirmed or held deposits, and those within the velocity window."""
    if not client_ids:
        return {}
    cutoff = clock.now() - services.rules().velocity_window
    rows = (
        Deposit.objects.filter(client_id__in=client_ids, status__in=("confirmed", "held"))
        .values("client_id")
        .annotate(n=Count("id"), recent=Count("id", filter=Q(confirmed_at__gte=cutoff)))
    )
    return {r["client_id"]: (r["n"], r["recent"]) for r in rows}


class _Accounts:
    """The ledger accounts a batch needs, looked up once each."""

    def __init__(self) -> None:
        self._wallets: dict[tuple[UUID, str, str], UUID] = {}
        self._system: dict[tuple[str, str], UUID] = {}

    def prefetch(self, deposits: list[Deposit]) -> None:
        """Open (or find) the pending and cash wallets of many clients in a few statements."""
        by_currency: dict[str, set[str]] = {}
        for d in deposits:
            by_currency.setdefault(d.currency, set()).add(str(d.client_id))
        for currency, owners in by_currency.items():
            for bucket in ("pending", "cash"):
                for owner, account_id in ledger.open_accounts(
                    "client", owners, currency, bucket
                ).items():
                    self._wallets[(UUID(owner), currency, bucket)] = account_id

    def wallet(self, client_id: UUID, currency: str, bucket: str) -> UUID:
        key = (client_id, currency, bucket)
        if key not in self._wallets:
            self._wallets[key] = ledger.wallet_account(client_id, currency, bucket).id
        return self._wallets[key]

    def clearing(self, provider: str, currency: str) -> UUID:
        key = (provider, currency)
        if key not in self._system:
            self._system[key] = services.clearing_account(provider, currency)
        return self._system[key]

    def fee_income(self, currency: str) -> UUID:
        key = ("fee_income", currency)
        if key not in self._system:
            self._system[key] = ledger.system_account("fee_income", currency).id
        return self._system[key]


def _chain(
    d: Deposit, event: NormalizedEvent, fee: int, hold: str, accounts: _Accounts
) -> list[ledger.Request]:
    """The linked ledger chain of a confirmation (as ``services._confirm_deposit`` posts)."""
    pending = accounts.wallet(d.client_id, d.currency, "pending")
    meta = {"reference": d.reference, "provider": d.provider, "provider_id": event.provider_id}
    chain: list[ledger.Request] = [
        ledger.TransferRequest(
            f"deposit:{d.reference}:credit",
            "deposit",
            d.currency,
            (
                ledger.debit(accounts.clearing(d.provider, d.currency), d.amount),
                ledger.credit(pending, d.amount),
            ),
            metadata=meta,
            actor=f"psp:{d.provider}",
            reason="deposit confirmed by the PSP",
        )
    ]
    if fee:
        chain.append(
            ledger.TransferRequest(
                f"deposit:{d.reference}:fee",
                "deposit_fee",
                d.currency,
                (ledger.debit(pending, fee), ledger.credit(accounts.fee_income(d.currency), fee)),
                metadata=meta,
                actor="system:payments",
                reason="deposit fee",
            )
        )
    if not hold and d.amount - fee > 0:
        cash = accounts.wallet(d.client_id, d.currency, "cash")
        chain.append(
            services.release_request(
                d, d.amount - fee, reason="available by rule", pending=pending, cash=cash
            )
        )
    return chain


def _first_failure(outcomes: Sequence[Any]) -> DomainError | None:
    failures = [o for o in outcomes if isinstance(o, DomainError)]
    primary = [f for f in failures if not isinstance(f, ledger_errors.LinkedTransferFailed)]
    chosen = primary or failures
    return chosen[0] if chosen else None


def _apply(c: _Confirming, results: list[ledger.TransferResult]) -> None:
    d, event = c.deposit, c.event
    now = clock.now()
    c.before = d.status
    d.credit_transfer_id = results[0].transfer_id
    d.fee = c.fee
    d.psp_fee = event.fee
    d.provider_id = event.provider_id or d.provider_id
    d.hold_reason = c.hold
    d.confirmed_at = now
    if c.fee:
        d.fee_transfer_id = results[1].transfer_id
    if not c.hold:
        d.release_transfer_id = results[-1].transfer_id
    d.status = "held" if c.hold else "confirmed"
    d.updated_at = now


_DEPOSIT_FIELDS = (
    "status",
    "updated_at",
    "credit_transfer_id",
    "fee",
    "psp_fee",
    "provider_id",
    "hold_reason",
    "confirmed_at",
    "fee_transfer_id",
    "release_transfer_id",
)


def _write(done: list[_Confirming]) -> None:
    """Write the confirmed deposits, their timeline steps, audit entries and events."""
    if not done:
        return
    bulk.update(Deposit, _DEPOSIT_FIELDS, [c.deposit for c in done])
    steps = []
    audits: list[dict[str, Any]] = []
    for c in done:
        d, event = c.deposit, c.event
        actor = f"psp:{d.provider}"
        reason = c.hold or "confirmed by the PSP"
        data = {"event_id": event.event_id, "fee": c.fee, "psp_fee": event.fee}
        before = c.before
        steps.append(
            PaymentEvent(
                id=new_id(),
                payment_type="deposit",
                payment_id=d.id,
                from_status=before,
                to_status=d.status,
                actor=actor,
                reason=reason[:300],
                data=data,
                occurred_at=d.updated_at,
            )
        )
        audits.append(
            {
                "actor": actor,
                "action": f"payments.deposit.{d.status}",
                "object_type": "deposit",
                "object_id": str(d.id),
                "reason": reason,
                "before": {"status": before},
                "after": {"status": d.status, **data},
            }
        )
    bulk.insert(PaymentEvent, steps)
    audit.record_many(audits)
    emit_many(
        DepositConfirmed(
            payment_id=c.deposit.id,
            client_id=c.deposit.client_id,
            reference=c.deposit.reference,
            amount=c.deposit.amount,
            currency=c.deposit.currency,
            actor=f"psp:{c.deposit.provider}",
            available=not c.hold,
            provider=c.deposit.provider,
        )
        for c in done
    )


def _unmatched(event: NormalizedEvent) -> str:
    services.open_exception(
        "unmatched_webhook",
        event.reference,
        f"{event.provider} event {event.event_id} ({event.kind}) matches no deposit.",
        event_id=event.event_id,
    )
    return "unmatched"


def _amount_mismatch(d: Deposit, event: NormalizedEvent) -> str:
    services.open_exception(
        "webhook_amount_mismatch",
        d.reference,
        f"The PSP confirmed {event.amount} {event.currency}; the intent was "
        f"{d.amount} {d.currency}. Nothing was posted.",
        event_id=event.event_id,
    )
    return "amount_mismatch"
