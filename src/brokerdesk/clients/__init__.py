"""Clients: individuals and companies, contact data, segments, tags, platform logins, timeline."""
