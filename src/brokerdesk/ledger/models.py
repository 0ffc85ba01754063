"""ledger tables."""
