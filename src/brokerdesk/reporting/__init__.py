"""Reporting: rollups, reports, exports, statements and the operations view."""
