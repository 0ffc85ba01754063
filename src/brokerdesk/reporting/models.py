"""Tables of reporting (only this module writes them)."""
