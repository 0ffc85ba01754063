"""Bonuses: campaigns, eligibility, bonus types, unlock conditions, forfeiture."""
