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


# Codes staff see in badges and lists (AML rules and cases, wallet buckets, document and
# client states). Unknown codes are shown as they are.
CODE_LABELS: dict[str, Any] = {
    # AML monitoring rules and severities
    "large_deposit": _("Large deposit"),
    "deposit_velocity": _("Many deposits in a short time"),
    "structuring": _("Structuring"),
    "dormancy_break": _("Dormant account active again"),
    "deposit_then_withdrawal": _("Deposit then withdrawal"),
    "low": _("Low"),
    "medium": _("Medium"),
    "high": _("High"),
    # cases and screening hits
    "open": _("Open"),
    "investigating": _("Investigating"),
    "closed": _("Closed"),
    "confirmed": _("Confirmed"),
    "dismissed": _("Dismissed"),
    "false_positive": _("False positive"),
    "valuable_alert": _("Valuable alert"),
    "confirmed_risk": _("Confirmed risk"),
    "sar_filed": _("Suspicious activity report filed"),
    # wallet buckets
    "cash": _("Cash"),
    "bonus": _("Bonus"),
    "locked": _("Locked for withdrawal"),
    "pending": _("Pending"),
    # documents
    "received": _("Received"),
    "accepted": _("Accepted"),
    "rejected": _("Rejected"),
    "expired": _("Expired"),
    "deleted": _("Deleted"),
    # payment reconciliation exceptions
    "unmatched_webhook": _("Provider notice with no matching payment"),
    "webhook_amount_mismatch": _("Amount differs from the provider's"),
    "chargeback_unfunded": _("Chargeback on money already spent"),
    "missing_at_psp": _("Not in the provider's settlement file"),
    "duplicate_row": _("Row appears twice in the file"),
    "malformed_row": _("Row could not be read"),
    "new": _("New"),
    "in_review": _("In review"),
    "resolved": _("Resolved"),
    # where a support ticket came from
    "portal": _("Client portal"),
    "email": _("E-mail"),
    "staff": _("Staff"),
    "api": _("API"),
    # KYC states (as the KYC badge names them)
    "lead": _("Not started"),
    "documents_pending": _("Documents needed"),
    "under_verification": _("Under verification"),
    "manual_review": _("Manual review"),
    "approved": _("Approved"),
    "restricted": _("Restricted"),
    "aml_review": _("AML review"),
    # clients
    "individual": _("Individual"),
    "corporate": _("Corporate"),
}


@register.filter
def code_label(code: str) -> Any:
    """A readable, translated name for a status or rule code (the code itself when unknown)."""
    return CODE_LABELS.get(code, code)
