"""Tables of notifications (only this module writes them)."""
