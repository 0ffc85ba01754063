"""The platform port and its adapters."""
