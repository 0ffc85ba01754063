"""Tables of propfirm (only this module writes them)."""
