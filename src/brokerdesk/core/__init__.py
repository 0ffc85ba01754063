"""core: ids, money and currencies, clock, errors, the transactional outbox, bus adapters,
the consumer runner, the audit log, metrics and logging — what every module stands on."""
