"""Database guards: ledger rows are append-only; on PostgreSQL each transfer must balance.

The service checks both already; these triggers refuse a write that bypasses it.
"""

from django.db import migrations

PG_FORWARD = """
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger rows are append-only: % on % refused', TG_OP, TG_TABLE_NAME;
END $$;
CREATE TRIGGER ledger_transfer_append_only BEFORE UPDATE OR DELETE ON ledger_transfer
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_entry_append_only BEFORE UPDATE OR DELETE ON ledger_entry
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    debits bigint;
    credits bigint;
BEGIN
    SELECT coalesce(sum(amount) FILTER (WHERE side = 'D'), 0),
           coalesce(sum(amount) FILTER (WHERE side = 'C'), 0)
      INTO debits, credits
      FROM ledger_entry
     WHERE transfer_id = NEW.id AND created_at = NEW.created_at;
    IF debits <> credits THEN
        RAISE EXCEPTION 'ledger transfer % does not balance: debits %, credits %',
            NEW.id, debits, credits;
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER ledger_transfer_balanced AFTER INSERT ON ledger_transfer
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();
"""

PG_BACKWARD = """
DROP TRIGGER ledger_transfer_balanced ON ledger_transfer;
DROP FUNCTION ledger_check_balanced();
DROP TRIGGER ledger_entry_append_only ON ledger_entry;
DROP TRIGGER ledger_transfer_append_only ON ledger_transfer;
DROP FUNCTION ledger_refuse_change();
"""

SQLITE_FORWARD = [
    "CREATE TRIGGER ledger_transfer_append_only BEFORE UPDATE ON ledger_transfer "
    "BEGIN SELECT RAISE(ABORT, 'ledger rows are append-only'); END;",
    "CREATE TRIGGER ledger_entry_append_only BEFORE UPDATE ON ledger_entry "
    "BEGIN SELECT RAISE(ABORT, 'ledger rows are append-only'); END;",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER ledger_transfer_append_only;",
    "DROP TRIGGER ledger_entry_append_only;",
]


def _run_raw(schema_editor, sql):
    # Straight to the cursor: the trigger bodies contain '%' placeholders of plpgsql.
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(sql)


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        _run_raw(schema_editor, PG_FORWARD)
    elif schema_editor.connection.vendor == "sqlite":
        for statement in SQLITE_FORWARD:
            schema_editor.execute(statement)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        _run_raw(schema_editor, PG_BACKWARD)
    elif schema_editor.connection.vendor == "sqlite":
        for statement in SQLITE_BACKWARD:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_initial")]
    operations = [migrations.RunPython(forward, backward)]
