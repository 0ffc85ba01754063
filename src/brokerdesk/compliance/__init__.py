"""Compliance: KYC state machine, jurisdiction rule sets, flags, documents, the ``may`` policy."""
