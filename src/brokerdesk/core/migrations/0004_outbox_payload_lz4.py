"""PostgreSQL: outbox payloads compressed with LZ4 instead of pglz.

The ledger writes one ``ledger.transfers_posted`` event per chunk of a batch, a JSON payload
of about 90 kB per 300 transfers, which PostgreSQL compresses when it stores it. pglz took
about 1.3 ms of the server's time per such payload (some 4 µs per transfer, a tenth of the
server's work on a batch); LZ4 takes a twentieth of that and compresses it as well. Rows
already written keep their pglz form (both are read alike). A server built without LZ4 keeps
pglz.
"""

from django.db import migrations

PG_FORWARD = """
DO $$
BEGIN
    EXECUTE 'ALTER TABLE core_outboxevent ALTER COLUMN payload SET COMPRESSION lz4';
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'LZ4 is not available on this server: outbox payloads stay pglz';
END $$;
"""

PG_BACKWARD = "ALTER TABLE core_outboxevent ALTER COLUMN payload SET COMPRESSION DEFAULT;"


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("core", "0003_audit_chains")]
    operations = [migrations.RunPython(forward, backward)]
