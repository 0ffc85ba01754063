"""Tables of bonuses (only this module writes them)."""
