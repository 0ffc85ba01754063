"""The ledger's API router."""

from ninja import Router

router = Router(tags=["ledger"])
