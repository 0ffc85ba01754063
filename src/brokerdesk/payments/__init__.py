"""Payments: PSP connectors, deposits, withdrawals, the sandbox PSP and reconciliation."""
