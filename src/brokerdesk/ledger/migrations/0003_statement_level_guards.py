"""PostgreSQL guards checked once per statement instead of once per row.

The per-row deferred "transfer balances" trigger and the two foreign keys of every entry cost
three lookups per entry at commit. They are replaced by one statement-level trigger over the
statement's new entries (a transition table) that refuses, in one query each:

* an entry whose transfer or account does not exist, or whose account's currency is not its
  transfer's currency;
* a transfer whose entries in the statement do not balance (debits = credits). The engine
  writes all legs of a transfer in one statement, so a transfer is checked whole.

Ledger accounts cannot be deleted once they have entries (what the foreign key gave). Also:
the ``LIKE`` index Django adds beside the unique idempotency key is dropped (nothing searches
keys by prefix), and account rows leave room on their page for in-place (HOT) updates.
"""

from django.db import migrations

PG_FORWARD = """
DROP TRIGGER ledger_transfer_balanced ON ledger_transfer;
DROP FUNCTION ledger_check_balanced();
ALTER TABLE ledger_entry DROP CONSTRAINT IF EXISTS ledger_entry_account_id_fkey;
ALTER TABLE ledger_entry DROP CONSTRAINT IF EXISTS ledger_entry_transfer_id_fkey;
DROP INDEX IF EXISTS ledger_transfer_idempotency_key_bbcd3861_like;
ALTER TABLE ledger_ledgeraccount SET (fillfactor = 80);

CREATE FUNCTION ledger_check_new_entries() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.transfer_id, n.account_id, t.id IS NULL AS no_transfer,
           a.id IS NULL AS no_account, t.currency AS transfer_currency,
           a.currency AS account_currency
      INTO bad
      FROM new_entries n
      LEFT JOIN ledger_transfer t ON t.id = n.transfer_id
      LEFT JOIN ledger_ledgeraccount a ON a.id = n.account_id
     WHERE t.id IS NULL OR a.id IS NULL OR a.currency <> t.currency
     LIMIT 1;
    IF FOUND THEN
        IF bad.no_transfer THEN
            RAISE EXCEPTION 'ledger entry names transfer % that does not exist', bad.transfer_id;
        ELSIF bad.no_account THEN
            RAISE EXCEPTION 'ledger entry names account % that does not exist', bad.account_id;
        END IF;
        RAISE EXCEPTION 'ledger entry on a % account in a % transfer %',
            bad.account_currency, bad.transfer_currency, bad.transfer_id;
    END IF;
    SELECT transfer_id,
           sum(amount) FILTER (WHERE side = 'D') AS debits,
           sum(amount) FILTER (WHERE side = 'C') AS credits
      INTO bad
      FROM new_entries
     GROUP BY transfer_id
    HAVING coalesce(sum(amount) FILTER (WHERE side = 'D'), 0)
        <> coalesce(sum(amount) FILTER (WHERE side = 'C'), 0)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transfer % does not balance: debits %, credits %',
            bad.transfer_id, coalesce(bad.debits, 0), coalesce(bad.credits, 0);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER ledger_entry_checked AFTER INSERT ON ledger_entry
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_check_new_entries();

CREATE FUNCTION ledger_refuse_account_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM ledger_entry WHERE account_id = OLD.id) THEN
        RAISE EXCEPTION 'ledger account % has entries and cannot be deleted', OLD.id;
    END IF;
    RETURN OLD;
END $$;
CREATE TRIGGER ledger_account_keep_with_entries BEFORE DELETE ON ledger_ledgeraccount
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_account_delete();
"""

PG_BACKWARD = """
DROP TRIGGER ledger_account_keep_with_entries ON ledger_ledgeraccount;
DROP FUNCTION ledger_refuse_account_delete();
DROP TRIGGER ledger_entry_checked ON ledger_entry;
DROP FUNCTION ledger_check_new_entries();
ALTER TABLE ledger_ledgeraccount RESET (fillfactor);
CREATE INDEX ledger_transfer_idempotency_key_bbcd3861_like
    ON ledger_transfer (idempotency_key varchar_pattern_ops);
ALTER TABLE ledger_entry ADD CONSTRAINT ledger_entry_account_id_fkey FOREIGN KEY (account_id)
    REFERENCES ledger_ledgeraccount (id) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE ledger_entry ADD CONSTRAINT ledger_entry_transfer_id_fkey FOREIGN KEY (transfer_id)
    REFERENCES ledger_transfer (id) DEFERRABLE INITIALLY DEFERRED;
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


def _run_raw(schema_editor, sql):
    # Straight to the cursor: the function bodies contain '%' placeholders of plpgsql.
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(sql)


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        _run_raw(schema_editor, PG_FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        _run_raw(schema_editor, PG_BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0002_append_only_and_balanced")]
    operations = [migrations.RunPython(forward, backward)]
