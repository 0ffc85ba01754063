"""Notifications: e-mail and in-app messages from events, per-locale templates, preferences."""
