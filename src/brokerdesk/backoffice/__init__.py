"""The staff back office (``/backoffice/``): staff MFA enforcement and the staff pages."""
