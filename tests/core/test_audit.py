"""The hash-chained audit log: entries verify, a tampered row is found, the command says so."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from brokerdesk.core import audit
from brokerdesk.core.models import AuditEntry

pytestmark = pytest.mark.django_db


def record_three() -> list[AuditEntry]:
    """Three entries about one client: one chain, seq 1, 2, 3."""
    return [
        audit.record(
            actor=f"staff:{n}",
            action="client.updated",
            object_type="client",
            object_id="42",
            reason="kyc_review",
            before={"status": "pending"},
            after={"status": "approved", "limit": n * 100},
        )
        for n in range(1, 4)
    ]


def test_entries_chain_and_verify():
    entries = record_three()

    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == audit.GENESIS_HASH
    assert entries[1].prev_hash == entries[0].hash
    assert audit.verify_chain() == audit.ChainReport(entries=3, ok=True)


def test_entries_about_different_objects_go_to_their_own_chains_and_all_verify():
    chains = {audit.chain_of("client", str(n)) for n in range(40)}
    for n in range(40):
        audit.record(actor="system", action="x", object_type="client", object_id=str(n))

    assert len(chains) > 1
    assert set(AuditEntry.objects.values_list("chain", flat=True)) == chains
    assert audit.verify_chain() == audit.ChainReport(entries=40, ok=True)


def test_a_tampered_row_in_any_chain_is_found():
    for n in range(40):
        audit.record(actor="system", action="x", object_type="client", object_id=str(n))
    victim = AuditEntry.objects.order_by("-chain", "-seq").first()
    assert victim is not None
    table = AuditEntry._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET actor = %s WHERE id = %s", ["mallory", victim.id])  # noqa: S608

    report = audit.verify_chain()

    assert (report.ok, report.chain, report.first_bad_seq) == (False, victim.chain, victim.seq)


def test_a_row_tampered_with_a_raw_update_is_reported():
    record_three()
    table = AuditEntry._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET reason = %s WHERE seq = %s", ["nothing", 2])  # noqa: S608

    report = audit.verify_chain()

    assert not report.ok
    assert report.first_bad_seq == 2
    assert report.problem == "entry altered"
    assert report.entries == 1


def test_a_deleted_row_is_reported_as_missing():
    record_three()
    AuditEntry.objects.filter(seq=2).delete()

    report = audit.verify_chain()

    assert (report.ok, report.first_bad_seq, report.problem) == (False, 2, "missing entry")


def test_verify_audit_command_passes_then_fails_on_tampering(capsys):
    record_three()
    call_command("verify_audit")
    assert json.loads(capsys.readouterr().out)["ok"] is True

    table = AuditEntry._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET after = %s WHERE seq = 3", ['{"status": "x"}'])  # noqa: S608
    with pytest.raises(CommandError, match="#3"):
        call_command("verify_audit")


def test_the_brokerdesk_cli_accepts_the_dashed_name(capsys):
    from brokerdesk.cli import main

    record_three()
    main(["verify-audit"])
    assert json.loads(capsys.readouterr().out)["entries"] == 3
