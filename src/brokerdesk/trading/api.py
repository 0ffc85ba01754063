"""The trading API router, mounted at /api/v1/trading/."""

from __future__ import annotations

from ninja import Router

router = Router(tags=["trading"])
