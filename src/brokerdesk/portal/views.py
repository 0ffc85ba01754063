"""Client portal pages: dashboard, profile, verification (KYC) and the referral landing.

Every view is wrapped in ``client_page``: it reads and changes only ``request.client_id``'s
data, and changes it only through the owning modules' services (which check again).
Money pages are in :mod:`.wallet_views`, trading pages in :mod:`.trading_views`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.utils import translation
from django.utils.translation import gettext as _t
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods
from django_countries import countries

from brokerdesk.clients import services as client_services
from brokerdesk.clients.queries import get_client
from brokerdesk.compliance import services as compliance
from brokerdesk.compliance.queries import (
    documents_of,
    kyc_history,
    kyc_status,
    missing_documents,
)
from brokerdesk.core.errors import DomainError
from brokerdesk.ledger.queries import balances_of
from brokerdesk.portal.access import client_page
from brokerdesk.portal.formatting import format_minor
from brokerdesk.portal.forms import (
    DOCUMENT_LABELS,
    DocumentForm,
    ProfileForm,
    add_domain_error,
)
from brokerdesk.trading import queries as trading_queries

KYC_LABELS = {
    "lead": (_("Not started"), "neutral", _("Upload your identity documents to get verified.")),
    "documents_pending": (
        _("Documents needed"),
        "warning",
        _("We need more documents from you before we can verify your account."),
    ),
    "under_verification": (
        _("Being checked"),
        "info",
        _("Your documents are being checked. This usually takes less than a day."),
    ),
    "manual_review": (
        _("Under review"),
        "info",
        _("A member of our compliance team is reviewing your application."),
    ),
    "approved": (_("Verified"), "success", _("You may deposit, trade and withdraw.")),
    "rejected": (_("Rejected"), "danger", _("Your verification was not successful.")),
    "restricted": (_("Restricted"), "danger", _("Some actions on your account are restricted.")),
    "aml_review": (_("Under review"), "warning", _("Your account is under a compliance review.")),
}
DOCUMENT_STATUS = {
    "received": (_("Received"), "info"),
    "accepted": (_("Accepted"), "success"),
    "rejected": (_("Rejected"), "danger"),
    "expired": (_("Expired"), "warning"),
    "deleted": (_("Deleted"), "neutral"),
}
BUCKET_LABELS = {
    "cash": _("Cash"),
    "bonus": _("Bonus"),
    "locked": _("Locked for withdrawal"),
    "pending": _("Pending"),
}
LANGUAGE_COOKIE_MAX_AGE = 365 * 24 * 3600


@dataclass(frozen=True)
class BalanceRow:
    """One wallet bucket as the pages show it."""

    currency: str
    bucket: str
    bucket_label: str
    available: str
    posted: str
    pending_in: str
    pending_out: str
    has_pending: bool


def balance_rows(client_id: Any) -> list[BalanceRow]:
    """The client's wallet buckets, per currency, formatted for the active locale (empty
    buckets other than cash are left out)."""
    return [
        BalanceRow(
            currency=b.currency,
            bucket=b.bucket,
            bucket_label=str(BUCKET_LABELS.get(b.bucket, b.bucket.replace("_", " ").capitalize())),
            available=format_minor(b.available, b.currency),
            posted=format_minor(b.posted, b.currency),
            pending_in=format_minor(b.pending_in, b.currency),
            pending_out=format_minor(b.pending_out, b.currency),
            has_pending=bool(b.pending_in or b.pending_out),
        )
        for b in balances_of("client", str(client_id))
        if b.bucket == "cash" or b.posted or b.pending_in or b.pending_out
    ]


def kyc_context(client_id: Any) -> dict[str, Any]:
    """The KYC badge, hint and — after a rejection — the reason we gave."""
    kyc = kyc_status(client_id)
    label, tone, hint = KYC_LABELS.get(kyc.state, (kyc.state, "neutral", ""))
    reason = ""
    if kyc.state in ("rejected", "documents_pending", "restricted"):
        history = kyc_history(client_id)
        if history and history[-1].to_state == kyc.state:
            reason = history[-1].reason
    return {
        "kyc": kyc,
        "kyc_label": label,
        "kyc_tone": tone,
        "kyc_hint": hint,
        "kyc_reason": reason,
    }


@client_page
def dashboard(request: HttpRequest) -> HttpResponse:
    """The signed-in client's name, KYC status, wallet balances and trading accounts."""
    client_id = request.client_id  # type: ignore[attr-defined]
    client = get_client(client_id)
    return render(
        request,
        "portal/dashboard.html",
        {
            "client": client,
            "country_name": countries.name(client.country) or client.country,
            "balances": balance_rows(client_id),
            "accounts": trading_queries.accounts_of(client_id),
            **kyc_context(client_id),
        },
    )


def _set_language(response: HttpResponse, language: str) -> None:
    if language in dict(settings.LANGUAGES):
        translation.activate(language)
        response.set_cookie(
            settings.LANGUAGE_COOKIE_NAME,
            language,
            max_age=LANGUAGE_COOKIE_MAX_AGE,
            samesite="Lax",
        )


@client_page
@require_http_methods(["GET", "POST"])
def profile(request: HttpRequest) -> HttpResponse:
    """The client's details; contact fields and the language can be changed here."""
    client_id = request.client_id  # type: ignore[attr-defined]
    client = get_client(client_id)
    initial = {
        "phone": client.phone,
        "address_line": client.address_line,
        "city": client.city,
        "postal_code": client.postal_code,
        "preferred_language": client.preferred_language or translation.get_language(),
    }
    form = ProfileForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        changes = {k: v for k, v in form.cleaned_data.items() if v != initial.get(k)}
        try:
            if changes:
                client_services.update_contact(
                    client_id, changes, by=request.user, reason="changed by the client"
                )
        except DomainError as error:
            add_domain_error(form, error)
        else:
            response = HttpResponseRedirect(request.path)
            _set_language(response, form.cleaned_data["preferred_language"])
            messages.success(request, _t("Your details were saved."))
            return response
    return render(
        request,
        "portal/profile.html",
        {
            "client": client,
            "form": form,
            "country_name": countries.name(client.country) or client.country,
        },
    )


@dataclass(frozen=True)
class DocumentRow:
    """An uploaded document as the client sees it."""

    label: str
    status_label: str
    tone: str
    uploaded_at: Any
    expires_on: Any
    note: str


def _document_rows(client_id: Any) -> list[DocumentRow]:
    rows = []
    for doc in documents_of(client_id):
        if doc.deleted_at is not None:
            continue
        status_label, tone = DOCUMENT_STATUS.get(doc.status, (doc.status, "neutral"))
        rows.append(
            DocumentRow(
                label=str(DOCUMENT_LABELS.get(doc.doc_type, doc.doc_type)),
                status_label=str(status_label),
                tone=tone,
                uploaded_at=doc.uploaded_at,
                expires_on=doc.expires_on,
                note=doc.review_note if doc.status == "rejected" else "",
            )
        )
    return rows


def _missing_labels(client_id: Any) -> list[str]:
    return [
        _t(" or ").join(str(DOCUMENT_LABELS.get(t, t)) for t in group)
        for group in missing_documents(client_id)
    ]


@client_page
@require_http_methods(["GET", "POST"])
def kyc(request: HttpRequest) -> HttpResponse:
    """Verification: the status (with the reason for a rejection), the documents and their
    review, an upload form, and — once everything needed is there — sending the file."""
    client_id = request.client_id  # type: ignore[attr-defined]
    form = DocumentForm()
    if request.method == "POST" and request.POST.get("action") == "submit":
        try:
            compliance.submit_kyc(client_id, by=request.user, reason="submitted by the client")
        except DomainError as error:
            messages.error(request, error.message)
        else:
            messages.success(request, _t("Thank you. Your documents were sent for checking."))
        return redirect("portal:kyc")
    if request.method == "POST":
        form = DocumentForm(request.POST, request.FILES)
        if form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                compliance.upload_document(
                    client_id,
                    doc_type=form.cleaned_data["doc_type"],
                    content=upload.read(),
                    filename=upload.name or "",
                    declared_content_type=upload.content_type,
                    issued_on=form.cleaned_data["issued_on"],
                    expires_on=form.cleaned_data["expires_on"],
                    by=request.user,
                )
            except DomainError as error:
                add_domain_error(form, error)
            else:
                messages.success(request, _t("The document was uploaded."))
                return redirect("portal:kyc")
    state = kyc_status(client_id).state
    missing = _missing_labels(client_id)
    return render(
        request,
        "portal/kyc.html",
        {
            "form": form,
            "documents": _document_rows(client_id),
            "missing": missing,
            "can_submit": not missing and state in ("lead", "documents_pending"),
            "can_upload": state not in ("approved", "under_verification", "manual_review")
            and not (state == "rejected" and kyc_status(client_id).rejection_final),
            **kyc_context(client_id),
        },
    )


REFERRAL_COOKIE = "bd_ref"
REFERRAL_COOKIE_MAX_AGE = 90 * 24 * 3600


def join(request: HttpRequest, code: str) -> HttpResponse:
    """A referral link: remember the signed click (first touch) and open the sign-up page."""
    from brokerdesk.partners import services as partners

    response = redirect("account_signup")
    try:
        token = partners.referral_token(code)
    except DomainError:
        return response  # an unknown or retired code: sign up without a referral
    if REFERRAL_COOKIE not in request.COOKIES:
        response.set_cookie(
            REFERRAL_COOKIE,
            token,
            max_age=REFERRAL_COOKIE_MAX_AGE,
            httponly=True,
            samesite="Lax",
        )
    return response
