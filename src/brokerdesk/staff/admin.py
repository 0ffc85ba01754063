"""Admin helpers of staff: the read-only admin lives in core (re-exported here)."""

from brokerdesk.core.admin import ReadOnlyAdmin

__all__ = ["ReadOnlyAdmin"]
