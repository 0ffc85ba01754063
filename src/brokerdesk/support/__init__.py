"""Support: tickets, queues, escalation, SLA, notes and tags."""
