"""Brokerdesk: CRM and back office for forex brokers and prop-trading firms."""

__version__ = "0.1.0"
