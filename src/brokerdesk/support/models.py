"""Tables of support (only this module writes them)."""
