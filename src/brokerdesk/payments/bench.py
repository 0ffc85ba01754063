"""``brokerdesk bench payments [--json] [--webhooks N] [--threads T] [--rows N]``.

Runs in a child process on an empty ``*_bench`` database (``core.benchdb``):

1. webhooks: N deposit intents created at an in-process sandbox PSP, then every payment's
   signed ``payment.succeeded`` webhook delivered twice (2N deliveries, the twins side by
   side) by T threads — T webhook requests in flight, as a threaded or async web server
   holds them — through ``services.receive_webhook``: signature check, then the group
   commit of ``payments.webhooks`` (inbox, deposit lock, ledger posting, timeline, audit,
   outbox). Each call returns once its deposit is credited and committed, so the clock
   stops when the last deposit is. Figures: ``webhooks_per_s`` (deliveries per second),
   ``batches`` and ``double_posted`` (deposits credited more than once; must be 0).
2. reconciliation: N settlement rows for N confirmed deposits (seeded through the ledger's
   batch engine), reconciled against the ledger (``reconciliation.reconcile_settlement``;
   set-based on PostgreSQL): ``reconcile_rows``, ``reconcile_s``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import threading
import time
from datetime import date
from typing import Any


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brokerdesk.settings")
    import django

    django.setup()


def _webhooks(count: int, threads: int) -> dict[str, Any]:
    from django.db import connection

    from brokerdesk.clients import services as clients
    from brokerdesk.compliance import services as compliance
    from brokerdesk.ledger import queries as ledger_queries
    from brokerdesk.ledger import services as ledger
    from brokerdesk.payments import connectors, services, webhooks
    from brokerdesk.payments.connectors.sandbox import SandboxConnector
    from brokerdesk.payments.models import Deposit, InboxEvent
    from brokerdesk.payments.sandbox import signing
    from brokerdesk.payments.sandbox.server import SandboxPSP

    services.set_rules(first_deposit_review_above=None, velocity_max_count=10**9)
    compliance.load_bundled_rule_sets()
    secret = secrets.token_hex(16)  # a throwaway signing secret
    psp = SandboxPSP(secret=secret, max_attempts=1).start()
    connectors.register(
        SandboxConnector(base_url=psp.url, api_key="sk_sandbox", webhook_secret=secret)
    )
    try:
        payers = []
        for n in range(max(1, min(50, count))):
            client = clients.register_individual(
                email=f"bench{n}@example.com",
                first_name="Bench",
                last_name=f"Payer{n}",
                date_of_birth=date(1980, 1, 1),
                phone="+357 22 123456",
                country="CY",
                jurisdiction="cysec",
                by="system:bench",
            )
            for step in ("under_verification", "approved"):
                compliance.transition_kyc(
                    client.pk, step, by="system:bench", reason="bench", provider="sumsub"
                )
            payers.append(client.pk)
        events: list[bytes] = []
        for n in range(count):
            intent = services.create_deposit_intent(
                payers[n % len(payers)],
                amount=10_000 + n,
                currency="USD",
                request_id=f"bench-{n}",
                by="system:bench",
                method_token="card_bench",  # noqa: S106 (a card token, not a password)
            )
            body = json.dumps(
                {
                    "id": f"evt_bench_{n}",
                    "type": "payment.succeeded",
                    "data": {
                        "object": {
                            "id": intent.provider_id,
                            "reference": intent.reference,
                            "amount": intent.amount,
                            "currency": "USD",
                            "status": "succeeded",
                        }
                    },
                }
            ).encode()
            events.append(body)
    finally:
        psp.stop()
    # signed now (the PSP's side of the work), so a long setup leaves no stale timestamp
    bodies = [(body, {signing.HEADER: signing.sign(body, secret)}) for body in events]
    work = [b for b in bodies for _ in range(2)]  # every webhook twice
    cursor = iter(range(len(work)))
    lock = threading.Lock()

    def run() -> None:
        try:
            while True:
                with lock:
                    i = next(cursor, None)
                if i is None:
                    return
                body, headers = work[i]
                services.receive_webhook("sandbox", body, headers)
        finally:
            connection.close()

    started = time.perf_counter()
    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    confirmed = InboxEvent.objects.filter(outcome="confirmed").count()
    expected = sum(Deposit.objects.values_list("amount", flat=True))
    clearing = ledger.system_account("psp_clearing", "USD", qualifier="sandbox")
    posted = -ledger_queries.balance(clearing.id).posted
    return {
        "webhooks_per_s": round(len(work) / elapsed, 1),
        "deliveries": len(work),
        "seconds": round(elapsed, 2),
        "double_posted": (confirmed - count) + (1 if posted != expected else 0),
        "confirmed": confirmed,
        "threads": threads,
        "batches": webhooks._GROUP.batches,
    }


def _reconcile(rows: int) -> dict[str, Any]:
    from brokerdesk.core import bulk, clock
    from brokerdesk.core.ids import new_id
    from brokerdesk.ledger import services as ledger
    from brokerdesk.payments.models import Deposit
    from brokerdesk.payments.reconciliation import reconcile_settlement
    from brokerdesk.payments.sandbox.server import _csv

    clearing = ledger.system_account("psp_clearing", "USD", qualifier="recon").id
    client_id = new_id()
    pending = ledger.wallet_account(client_id, "USD", "pending").id
    now = clock.now()
    seeded = time.perf_counter()
    lines: list[dict[str, Any]] = []
    for start in range(0, rows, 5_000):
        refs = [f"dep_{n:032x}" for n in range(start, min(rows, start + 5_000))]
        units = [
            [
                ledger.TransferRequest(
                    f"deposit:{ref}:credit",
                    "deposit",
                    "USD",
                    (ledger.debit(clearing, 1_000), ledger.credit(pending, 1_000)),
                )
            ]
            for ref in refs
        ]
        ledger.post_batch(units)
        bulk.insert(
            Deposit,
            [
                Deposit(
                    id=new_id(),
                    request_key=f"recon-{ref}",
                    reference=ref,
                    client_id=client_id,
                    provider="recon",
                    amount=1_000,
                    currency="USD",
                    status="confirmed",
                    created_by="system:bench",
                    created_at=now,
                    confirmed_at=now,
                    updated_at=now,
                )
                for ref in refs
            ],
        )
        lines.extend(
            {
                "batch_id": "stl_bench",
                "row_type": "payment",
                "psp_id": f"pay_{ref[-12:]}",
                "reference": ref,
                "currency": "USD",
                "gross": 1_000,
                "fee": 15,
                "net": 985,
                "occurred_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "settled_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            for ref in refs
        )
    seed_s = time.perf_counter() - seeded
    text = _csv(lines)
    started = time.perf_counter()
    report = reconcile_settlement(text, provider="recon", source="bench.csv")
    return {
        "reconcile_rows": rows,
        "reconcile_s": round(time.perf_counter() - started, 2),
        "reconcile_matched": report.matched,
        "reconcile_exceptions": len(report.exceptions),
        "seed_s": round(seed_s, 2),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(prog="brokerdesk bench payments")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--webhooks", type=int, default=2_000, help="distinct webhook events")
    parser.add_argument(
        "--threads", type=int, default=256, help="delivering threads (webhooks in flight)"
    )
    parser.add_argument("--rows", type=int, default=100_000, help="settlement rows")
    args = parser.parse_args(argv)

    _setup_django()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    figures: dict[str, Any] = {"database": connection.vendor}
    if args.webhooks > 0:
        figures.update(_webhooks(args.webhooks, args.threads))
    if args.rows > 0:
        figures.update(_reconcile(args.rows))
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>22}: {value}")
    ok = figures.get("double_posted", 0) == 0 and figures.get("reconcile_exceptions", 0) == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
