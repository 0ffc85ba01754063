"""Automations: event-triggered rules, audited runs, exceptions queue."""
