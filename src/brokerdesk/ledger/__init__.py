"""ledger: the double-entry, append-only, idempotent system of record for client money."""
