"""PostgreSQL: an entry's primary key leads with its transfer, and replaces the transfer index.

Entries had two B-trees beside the account index: the primary key ``(id, created_at)`` (the
partition column must be in it) and ``(transfer_id, created_at)`` for a transfer's entries.
Nothing reads an entry by its id alone (the admin shows entries under their transfer; the
engine, reversals and the replay read them by transfer or by account), so one index serves
both: the primary key ``(transfer_id, id, created_at)`` — unique, and found by transfer. Every
entry written maintains one B-tree less (two per two-leg transfer). SQLite keeps its key.
"""

from django.db import migrations

PG_FORWARD = """
ALTER TABLE ledger_entry DROP CONSTRAINT ledger_entry_pkey;
DROP INDEX ledger_entry_transfer;
ALTER TABLE ledger_entry ADD CONSTRAINT ledger_entry_pkey PRIMARY KEY (transfer_id, id, created_at);
"""

PG_BACKWARD = """
ALTER TABLE ledger_entry DROP CONSTRAINT ledger_entry_pkey;
ALTER TABLE ledger_entry ADD CONSTRAINT ledger_entry_pkey PRIMARY KEY (id, created_at);
CREATE INDEX ledger_entry_transfer ON ledger_entry (transfer_id, created_at);
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0003_statement_level_guards")]
    operations = [migrations.RunPython(forward, backward)]
