"""The propfirm API router, mounted at /api/v1/propfirm/."""

from __future__ import annotations

from ninja import Router

router = Router(tags=["propfirm"])
