"""The notifications API router, mounted at /api/v1/notifications/."""

from __future__ import annotations

from ninja import Router

router = Router(tags=["notifications"])
