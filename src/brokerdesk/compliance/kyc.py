"""The KYC state machine: states, the explicit transition table and the event each one emits.

Pure data and functions (no database); ``services.transition_kyc`` applies it.
"""

from __future__ import annotations

from enum import StrEnum

from brokerdesk.core.errors import IllegalTransition


class KycState(StrEnum):
    """Where a client stands in onboarding and compliance."""

    LEAD = "lead"  # registered, nothing submitted
    DOCUMENTS_PENDING = "documents_pending"  # asked for documents, waiting for them
    UNDER_VERIFICATION = "under_verification"  # submitted; a provider or staff is checking
    MANUAL_REVIEW = "manual_review"  # a person must decide (ambiguous result, EDD)
    APPROVED = "approved"  # verified: may deposit, trade, withdraw (subject to flags)
    REJECTED = "rejected"  # refused (final, or retry through documents_pending)
    RESTRICTED = "restricted"  # verified once, now limited by compliance
    AML_REVIEW = "aml_review"  # restricted pending AML investigation


S = KycState

# from-state → {to-state: event type}. Anything not listed is illegal.
TRANSITIONS: dict[KycState, dict[KycState, str]] = {
    S.LEAD: {
        S.DOCUMENTS_PENDING: "kyc.documents_requested",
        S.UNDER_VERIFICATION: "kyc.submitted",
        S.REJECTED: "kyc.rejected",
    },
    S.DOCUMENTS_PENDING: {
        S.UNDER_VERIFICATION: "kyc.submitted",
        S.REJECTED: "kyc.rejected",
    },
    S.UNDER_VERIFICATION: {
        S.APPROVED: "kyc.approved",
        S.MANUAL_REVIEW: "kyc.manual_review",
        S.REJECTED: "kyc.rejected",
        S.DOCUMENTS_PENDING: "kyc.documents_requested",
        S.AML_REVIEW: "kyc.aml_review",
    },
    S.MANUAL_REVIEW: {
        S.APPROVED: "kyc.approved",
        S.REJECTED: "kyc.rejected",
        S.DOCUMENTS_PENDING: "kyc.documents_requested",
        S.RESTRICTED: "kyc.restricted",
        S.AML_REVIEW: "kyc.aml_review",
    },
    S.APPROVED: {
        S.DOCUMENTS_PENDING: "kyc.documents_requested",  # re-verification (expired documents)
        S.MANUAL_REVIEW: "kyc.manual_review",
        S.RESTRICTED: "kyc.restricted",
        S.AML_REVIEW: "kyc.aml_review",
    },
    S.RESTRICTED: {
        S.APPROVED: "kyc.approved",
        S.AML_REVIEW: "kyc.aml_review",
        S.REJECTED: "kyc.rejected",
    },
    S.AML_REVIEW: {
        S.APPROVED: "kyc.approved",
        S.RESTRICTED: "kyc.restricted",
        S.REJECTED: "kyc.rejected",
    },
    S.REJECTED: {
        S.DOCUMENTS_PENDING: "kyc.documents_requested",  # only when the rejection allows retry
    },
}

# Decisions only staff (or a trusted system actor such as a provider webhook) may take.
STAFF_DECISIONS: frozenset[KycState] = frozenset(
    {S.APPROVED, S.REJECTED, S.RESTRICTED, S.AML_REVIEW, S.MANUAL_REVIEW}
)


def event_for(current: KycState | str, target: KycState | str) -> str:
    """The event type of ``current → target``, or ``IllegalTransition``."""
    try:
        src, dst = KycState(current), KycState(target)
    except ValueError:
        raise IllegalTransition(
            f"Unknown KYC state {target!r}.", code="unknown_state", field="to_state"
        ) from None
    event = TRANSITIONS.get(src, {}).get(dst)
    if event is None:
        raise IllegalTransition(
            f"A client in {src.value} cannot move to {dst.value}.",
            field="to_state",
            from_state=src.value,
            to_state=dst.value,
        )
    return event
