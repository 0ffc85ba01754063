"""The bonuses API router, mounted at /api/v1/bonuses/."""

from __future__ import annotations

from ninja import Router

router = Router(tags=["bonuses"])
