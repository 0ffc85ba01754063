"""Readable, translatable names for the codes the back office shows (document types…)."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.translation import gettext_lazy as _

register = template.Library()

DOCUMENT_TYPES: dict[str, Any] = {
    "passport": _("Passport"),
    "national_id": _("National identity card"),
    "driving_licence": _("Driving licence"),
    "residence_permit": _("Residence permit"),
    "proof_of_address": _("Proof of address"),
    "selfie": _("Selfie"),
    "bank_statement": _("Bank statement"),
    "source_of_funds": _("Source of funds"),
    "certificate_of_incorporation": _("Certificate of incorporation"),
    "articles_of_association": _("Articles of association"),
    "ubo_declaration": _("Declaration of beneficial owners"),
    "register_of_directors": _("Register of directors"),
}


@register.filter
def doc_type(code: str) -> Any:
    """The document type's name (the code itself when unknown)."""
    return DOCUMENT_TYPES.get(code, code)


@register.filter
def minor(amount: int | None, currency: str) -> str:
    """Minor units shown at the currency's scale with its code (``1,234.56 USD``)."""
    from brokerdesk.backoffice.read import money

    return money(amount, currency)
