"""Prop-firm challenges: products, phases, rules, evaluation, funded accounts, payouts."""
