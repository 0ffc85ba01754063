"""The automations API router, mounted at /api/v1/automations/."""

from __future__ import annotations

from ninja import Router

router = Router(tags=["automations"])
