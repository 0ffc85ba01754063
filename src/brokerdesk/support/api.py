"""The support API router, mounted at /api/v1/support/."""

from __future__ import annotations

from ninja import Router

router = Router(tags=["support"])
