"""Tables of automations (only this module writes them)."""
