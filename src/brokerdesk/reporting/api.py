"""The reporting API router, mounted at /api/v1/reporting/."""

from __future__ import annotations

from ninja import Router

router = Router(tags=["reporting"])
