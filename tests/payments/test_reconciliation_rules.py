"""Reconciliation rules: partial settlements, rolling reserves, tolerances, timing windows,
the PSP's fees on an expense account, and the same results on the row loop and the
set-based PostgreSQL path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection, transaction

from brokerdesk.ledger import queries as ledger_queries
from brokerdesk.ledger import services as ledger
from brokerdesk.payments import reconciliation, services
from brokerdesk.payments.models import ReconciliationException, Settlement, SettlementLine
from brokerdesk.payments.reconciliation import reconcile_settlement
from brokerdesk.payments.services import SettlementTerms
from tests.payments.conftest import funded, new_client

pytestmark = pytest.mark.django_db

HEADER = "batch_id,row_type,psp_id,reference,currency,gross,fee,reserve,net,occurred_at,settled_at"


def day(offset: int = 0) -> str:
    return (datetime.now(UTC) + timedelta(days=offset)).strftime("%Y-%m-%dT%H:%M:%SZ")


def row(
    reference: str,
    gross: int,
    fee: int,
    net: int,
    *,
    psp: str = "p1",
    row_type: str = "payment",
    batch: str = "b1",
    reserve: str = "",
    at: int = 0,
) -> str:
    return (
        f"{batch},{row_type},{psp},{reference},USD,{gross},{fee},{reserve},{net},{day()},{day(at)}"
    )


def reconcile(*rows: str) -> Any:
    return reconcile_settlement(
        "\n".join([HEADER, *rows]) + "\n",
        provider="sandbox",
        source="test.csv",
        missing_grace=timedelta(days=60),
    )


def terms(**kw: Any) -> None:
    services.set_rules(settlement={"sandbox": SettlementTerms(**kw)})


def posted(account_id: Any) -> int:
    return abs(ledger_queries.balance(account_id).posted)


def kinds(report: Any) -> list[tuple[str, str]]:
    return [(e["kind"], e["reference"]) for e in report.exceptions]


# ------------------------------------------------------------------- partial settlements


def test_a_payment_settled_across_two_files_is_partial_then_matched(local_psp):
    deposit = funded(local_psp, new_client(verified=True), 100_000)

    first = reconcile(row(deposit.reference, 60_000, 900, 59_100, psp="a"))
    assert first.clean and (first.matched, first.partial) == (1, 1)
    assert not Settlement.objects.filter(payment_id=deposit.id).exists()

    again = reconcile(row(deposit.reference, 60_000, 900, 59_100, psp="a"))  # the same row
    assert again.clean and again.partial == 0
    assert SettlementLine.objects.filter(payment_id=deposit.id).count() == 1

    second = reconcile(row(deposit.reference, 40_000, 600, 39_400, psp="b", batch="b2"))
    assert second.clean and (second.matched, second.partial) == (1, 0)
    assert Settlement.objects.filter(payment_id=deposit.id).exists()
    clearing = services.clearing_account("sandbox", "USD")
    assert ledger_queries.balance(clearing).posted == 0  # the PSP owes nothing more


def test_a_row_restated_with_other_figures_is_flagged_not_counted(local_psp):
    deposit = funded(local_psp, new_client(verified=True), 100_000)
    assert reconcile(row(deposit.reference, 40_000, 0, 40_000, psp="a")).clean

    report = reconcile(row(deposit.reference, 50_000, 0, 50_000, psp="a"))

    assert kinds(report) == [("duplicate_row", deposit.reference)]
    assert "(a) was settled before with other figures" in report.exceptions[0]["detail"]
    assert SettlementLine.objects.get(payment_id=deposit.id).gross == 40_000


def test_over_settlement_is_an_amount_mismatch(local_psp):
    deposit = funded(local_psp, new_client(verified=True), 100_000)

    report = reconcile(
        row(deposit.reference, 60_000, 0, 60_000, psp="a"),
        row(deposit.reference, 60_000, 0, 60_000, psp="b"),
    )

    assert kinds(report) == [("amount_mismatch", deposit.reference)]
    assert "120000 in all" in report.exceptions[0]["detail"]
    assert report.matched == 1 and report.partial == 1


def test_a_partial_settlement_past_the_window_and_a_late_row_are_exceptions(local_psp):
    terms(settlement_days=1)
    alice = new_client(verified=True)
    short = funded(local_psp, alice, 100_000)
    late = funded(local_psp, alice, 50_000)
    assert reconcile(row(short.reference, 60_000, 0, 60_000)).clean

    report = reconcile(row(late.reference, 50_000, 0, 50_000, at=3))

    assert kinds(report) == [
        ("timing_mismatch", late.reference),
        ("amount_mismatch", short.reference),
    ]
    assert "the window is T+1" in report.exceptions[0]["detail"]
    assert "settled 60000 so far" in report.exceptions[1]["detail"]
    # a late row is not a mismatch: it still settles its payment
    assert Settlement.objects.filter(payment_id=late.id).exists()


# ----------------------------------------------------------------------------- tolerances


@pytest.mark.parametrize(
    ("settings", "gross", "clean"),
    [
        ({}, 100_001, False),
        ({"amount_tolerance": 5}, 100_005, True),
        ({"amount_tolerance": 5}, 99_995, True),
        ({"amount_tolerance": 5}, 100_006, False),
        ({"amount_tolerance_bps": 10}, 100_100, True),  # 10 bps of 100,000 = 100
        ({"amount_tolerance_bps": 10}, 100_101, False),
    ],
)
def test_the_amount_tolerance(local_psp, settings, gross, clean):
    terms(**settings)
    deposit = funded(local_psp, new_client(verified=True), 100_000)

    report = reconcile(row(deposit.reference, gross, 0, gross))

    assert report.clean is clean, report.exceptions
    if clean:
        assert report.partial == 0 and Settlement.objects.filter(payment_id=deposit.id).exists()
    else:
        assert kinds(report) == [("amount_mismatch", deposit.reference)]


def test_the_fee_is_checked_against_the_psps_pricing_within_its_tolerance(local_psp):
    alice = new_client(verified=True)
    near = funded(local_psp, alice, 100_000)
    far = funded(local_psp, alice, 100_000)
    terms(fee_bps=150, fee_fixed=30, fee_tolerance=5)  # expected 1530

    report = reconcile(
        row(near.reference, 100_000, 1_534, 98_466), row(far.reference, 100_000, 1_600, 98_400)
    )

    assert kinds(report) == [("fee_mismatch", far.reference)]
    assert "fee 1600 is not the expected 1530 (± 5)" in report.exceptions[0]["detail"]


# ------------------------------------------------------------------------ fees and booking


def test_the_psps_fee_goes_to_an_expense_account_and_the_net_to_the_bank(local_psp):
    deposit = funded(local_psp, new_client(verified=True), 100_000)
    fees = ledger.system_account("psp_fee_expense", "USD", qualifier="sandbox").id
    bank = ledger.system_account("bank", "USD").id
    clearing = services.clearing_account("sandbox", "USD")
    bank_before = ledger_queries.balance(bank).posted

    report = reconcile(row(deposit.reference, 100_000, 1_500, 98_500))
    reconcile(row(deposit.reference, 100_000, 1_500, 98_500))  # the file again: no posting

    assert report.clean
    assert posted(fees) == 1_500
    assert abs(ledger_queries.balance(bank).posted - bank_before) == 98_500
    assert ledger_queries.balance(clearing).posted == 0


# --------------------------------------------------------------------------- reserves


def test_a_configured_reserve_is_withheld_and_released_by_a_later_file(local_psp):
    terms(reserve_bps=1_000, reserve_days=7)  # 10% for a week
    deposit = funded(local_psp, new_client(verified=True), 100_000)
    reserve = reconciliation.reserve_account("sandbox", "USD")

    held = reconcile(row(deposit.reference, 100_000, 1_500, 88_500))  # no reserve given
    assert held.clean, held.exceptions
    assert posted(reserve) == 10_000

    released = reconcile(
        row(deposit.reference, 10_000, 0, 10_000, row_type="reserve_release", psp="r", at=7)
    )
    assert released.clean and released.matched == 1
    assert posted(reserve) == 0


def test_a_reserve_from_the_file_not_released_by_its_due_date_is_an_exception(local_psp):
    terms(reserve_days=3)
    alice = new_client(verified=True)
    kept = funded(local_psp, alice, 100_000)
    other = funded(local_psp, alice, 1_000)

    assert reconcile(row(kept.reference, 100_000, 1_500, 93_500, reserve="5000")).clean
    report = reconcile(row(other.reference, 1_000, 0, 1_000, at=4))

    assert ("reserve_overdue", kept.reference) in kinds(report)
    detail = next(e["detail"] for e in report.exceptions if e["kind"] == "reserve_overdue")
    assert "5000 USD withheld" in detail


def test_releasing_more_than_was_withheld_is_an_exception(local_psp):
    deposit = funded(local_psp, new_client(verified=True), 100_000)
    assert reconcile(row(deposit.reference, 100_000, 0, 95_000, reserve="5000")).clean

    report = reconcile(
        row(deposit.reference, 3_000, 0, 3_000, row_type="reserve_release", psp="r1"),
        row(deposit.reference, 3_000, 0, 3_000, row_type="reserve_release", psp="r2"),
    )

    assert kinds(report) == [("amount_mismatch", deposit.reference)]
    assert "(6000 in all), 5000 USD" in report.exceptions[0]["detail"]
    assert report.matched == 1


# ------------------------------------------------------------ both paths, the same results


def _rich_file(alice: Any, psp: Any) -> str:
    whole, part, late, cut, reserved = (funded(psp, alice, 10_000) for _ in range(5))
    return "\n".join(
        [
            HEADER,
            row(whole.reference, 10_000, 150, 9_850),
            row(part.reference, 4_000, 60, 3_940, psp="x"),
            row(part.reference, 4_000, 60, 3_940, psp="y"),
            row(part.reference, 4_000, 60, 3_940, psp="z"),  # over
            row(part.reference, 4_000, 60, 3_940, psp="z"),  # duplicate
            row(late.reference, 10_000, 150, 9_850, at=5),
            row(cut.reference, 10_000, 150, 9_000),  # fee arithmetic
            row("dep_nowhere", 10_000, 150, 9_850),
            row(reserved.reference, 10_000, 150, 8_850, reserve="1000"),
            row(reserved.reference, 600, 0, 600, row_type="reserve_release", psp="r1"),
            row(reserved.reference, 600, 0, 600, row_type="reserve_release", psp="r2"),
            row(whole.reference, 10_000, "x", 9_850, psp="bad"),  # type: ignore[arg-type]
            row(whole.reference, 1, 0, 1, row_type="refund"),
        ]
    )


class _Undo(Exception):
    pass


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the SQL path is PostgreSQL's")
def test_the_row_loop_and_the_set_based_path_agree(local_psp, monkeypatch):
    terms(settlement_days=2, amount_tolerance=0, fee_bps=150, fee_tolerance=0)
    text = _rich_file(new_client(verified=True), local_psp)
    outcomes = []
    for vendor in ("sqlite", "postgresql"):  # the row loop first, then the SQL
        monkeypatch.setattr(reconciliation, "connection", SimpleNamespace(vendor=vendor))
        try:
            with transaction.atomic():
                report = reconcile_settlement(
                    text, provider="sandbox", source="rich.csv", missing_grace=timedelta(0)
                )
                lines = sorted(
                    SettlementLine.objects.values_list(
                        "row_type", "reference", "psp_id", "gross", "reserve", "partial", "batch"
                    )
                )
                settled = Settlement.objects.count()
                fees = ledger.system_account("psp_fee_expense", "USD", qualifier="sandbox").id
                outcomes.append(
                    (
                        report.rows,
                        report.matched,
                        report.partial,
                        report.exceptions,
                        lines,
                        settled,
                        posted(fees),
                    )
                )
                raise _Undo
        except _Undo:
            pass

    assert outcomes[0] == outcomes[1]
    assert ReconciliationException.objects.count() == 0  # both rolled back


def test_a_rich_file_gives_the_same_results_on_either_database(local_psp):
    terms(settlement_days=2, amount_tolerance=0, fee_bps=150, fee_tolerance=0)
    text = _rich_file(new_client(verified=True), local_psp)

    report = reconcile_settlement(
        text, provider="sandbox", source="rich.csv", missing_grace=timedelta(0)
    )

    assert (report.rows, report.matched, report.partial) == (13, 5, 1)
    assert [(e["kind"], e.get("line", "")) for e in report.exceptions] == [
        ("amount_mismatch", "5"),
        ("duplicate_row", "6"),
        ("timing_mismatch", "7"),
        ("fee_mismatch", "8"),
        ("missing_in_ledger", "9"),
        ("amount_mismatch", "12"),
        ("malformed_row", "13"),
        ("malformed_row", "14"),
        ("amount_mismatch", ""),  # the partial settlement, past its window
        ("reserve_overdue", ""),  # 400 of the reserve was never released
    ]
    details = [e["detail"] for e in report.exceptions]
    assert details[0].endswith("settled gross 4000 (12000 in all), the deposit is 10000 USD.")
    assert details[2].endswith("5 days after the deposit of " + day()[:10] + "; the window is T+2.")
    assert details[-1].startswith("Reserve of ") and "400 USD withheld" in details[-1]
