"""Reconciliation of sandbox settlement files against the ledger, and the exceptions queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from brokerdesk.core.errors import IllegalTransition, ValidationError
from brokerdesk.core.models import AuditEntry
from brokerdesk.payments import queries, services
from brokerdesk.payments.models import ReconciliationException, ReconciliationRun
from brokerdesk.payments.reconciliation import reconcile_settlement
from tests.payments.conftest import deliver, funded, new_client

pytestmark = pytest.mark.django_db


def later() -> datetime:
    return datetime.now(UTC) + timedelta(seconds=5)


def settle_and_reconcile(psp, text_edit=None, **kw):
    batch = psp.settle(now=later())
    text = batch["csv"] if text_edit is None else text_edit(batch["csv"])
    return reconcile_settlement(
        text, provider="sandbox", source=batch["batch_id"], missing_grace=timedelta(0), **kw
    )


def test_an_untouched_settlement_file_reconciles_clean(local_psp):
    alice = new_client(verified=True)
    funded(local_psp, alice, 100_000)
    deposit = funded(local_psp, alice, 25_000)
    sent = services.send_payout(
        services.request_withdrawal(
            alice.pk,
            amount=30_000,
            currency="USD",
            method_id=deposit.method_id,
            request_id="w-1",
            by="system:test",
        ).id
    )
    deliver(local_psp, sent.provider_id, "paid")

    report = settle_and_reconcile(local_psp)

    assert report.clean, report.exceptions
    assert (report.rows, report.matched) == (3, 3)
    assert ReconciliationRun.objects.get().exceptions == 0
    assert AuditEntry.objects.filter(action="payments.reconciliation.run").count() == 1


def test_a_tampered_amount_is_an_exception(local_psp):
    alice = new_client(verified=True)
    deposit = funded(local_psp, alice, 100_000)

    report = settle_and_reconcile(
        local_psp, lambda text: text.replace(",100000,1500,98500,", ",100100,1500,98600,")
    )

    assert not report.clean
    (exception,) = queries.exceptions(status="new")
    assert (exception.kind, exception.reference) == ("amount_mismatch", deposit.reference)
    assert "100100" in exception.detail


def test_a_tampered_fee_a_foreign_row_and_a_duplicate_row_are_each_flagged(local_psp):
    alice = new_client(verified=True)
    deposit = funded(local_psp, alice, 100_000)

    def tamper(text: str) -> str:
        header, row = text.strip().split("\n")
        return "\n".join(
            [
                header,
                row.replace(",1500,98500,", ",1500,98000,"),
                row.replace(deposit.reference, "dep_unknown"),
                row,
            ]
        )

    report = settle_and_reconcile(local_psp, tamper)

    kinds = sorted(e["kind"] for e in report.exceptions)
    assert kinds == ["duplicate_row", "fee_mismatch", "missing_in_ledger"]


def test_a_confirmed_deposit_the_psp_never_settled_is_missing_at_psp(local_psp):
    alice = new_client(verified=True)
    kept = funded(local_psp, alice, 100_000)
    dropped = funded(local_psp, alice, 5_000)

    report = settle_and_reconcile(
        local_psp,
        lambda text: "\n".join(line for line in text.split("\n") if dropped.reference not in line),
    )

    assert [(e["kind"], e["reference"]) for e in report.exceptions] == [
        ("missing_at_psp", dropped.reference)
    ]
    assert report.matched == 1 and kept.reference not in str(report.exceptions)


def test_a_chargeback_settles_as_a_matched_negative_row(local_psp):
    alice = new_client(verified=True)
    deposit = funded(local_psp, alice, 100_000)
    assert deliver(local_psp, deposit.provider_id, "chargeback") == "reversed"

    report = settle_and_reconcile(local_psp)

    assert report.clean, report.exceptions
    assert report.rows == 2


def test_a_file_without_the_required_columns_is_refused():
    with pytest.raises(ValidationError) as error:
        reconcile_settlement("reference,amount\nx,1\n", provider="sandbox", source="bad.csv")
    assert error.value.code == "bad_settlement_file" and "gross" in error.value.message


def test_resolving_an_exception_needs_a_note_and_goes_through_review(local_psp):
    alice = new_client(verified=True)
    funded(local_psp, alice, 100_000)
    settle_and_reconcile(local_psp, lambda text: text.replace(",100000,", ",100001,"))
    exception = ReconciliationException.objects.get()

    with pytest.raises(ValidationError) as no_note:
        services.resolve_exception(exception.id, by="user:finance-1", note="  ")
    assert no_note.value.code == "note_required" and no_note.value.field == "note"

    services.review_exception(exception.id, by="user:finance-1")
    services.resolve_exception(exception.id, by="user:finance-1", note="PSP corrected the file")

    exception.refresh_from_db()
    assert (exception.status, exception.resolved_by) == ("resolved", "user:finance-1")
    assert exception.resolution_note == "PSP corrected the file"
    with pytest.raises(IllegalTransition):
        services.review_exception(exception.id, by="user:finance-1")


def test_the_scheduled_job_reconciles_each_dropped_file_once(local_psp, settings, tmp_path):
    from brokerdesk.payments.consumers import reconcile_settlements

    settings.DATA_DIR = tmp_path
    alice = new_client(verified=True)
    funded(local_psp, alice, 100_000)
    inbox = tmp_path / "settlements" / "sandbox"
    inbox.mkdir(parents=True)
    (inbox / "day1.csv").write_text(local_psp.settle(now=later())["csv"])

    assert reconcile_settlements() == 1
    assert reconcile_settlements() == 0
    run = ReconciliationRun.objects.get()
    assert (run.rows, run.matched, run.exceptions) == (1, 1, 0)


def test_the_command_reports_a_tampered_file_and_exits_1(local_psp, tmp_path, capsys):
    from django.core.management import call_command

    alice = new_client(verified=True)
    funded(local_psp, alice, 100_000)
    path = tmp_path / "tampered.csv"
    path.write_text(local_psp.settle(now=later())["csv"].replace(",100000,", ",100001,"))

    with pytest.raises(SystemExit) as exit_:
        call_command("reconcile_settlement", str(path), "--provider", "sandbox")

    assert exit_.value.code == 1
    assert "amount_mismatch" in capsys.readouterr().out
