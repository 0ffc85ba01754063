"""Client portal pages."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext_lazy as _
from django_countries import countries

from brokerdesk.clients.queries import client_id_for_user, get_client
from brokerdesk.compliance.queries import kyc_status
from brokerdesk.ledger.queries import balances_of
from brokerdesk.portal.formatting import format_minor
from brokerdesk.staff.roles import is_staff_member

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


@dataclass(frozen=True)
class BalanceRow:
    """One wallet bucket as the dashboard shows it."""

    currency: str
    bucket: str
    available: str
    posted: str
    pending_in: str
    pending_out: str
    has_pending: bool


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """The signed-in client's name, KYC status and wallet balances."""
    client_id = client_id_for_user(request.user)
    if client_id is None:
        if is_staff_member(request.user):
            return redirect("backoffice:dashboard")
        return render(request, "portal/no_client.html", status=404)
    client = get_client(client_id)
    kyc = kyc_status(client_id)
    label, tone, hint = KYC_LABELS.get(kyc.state, (kyc.state, "neutral", ""))
    rows = [
        BalanceRow(
            currency=b.currency,
            bucket=b.bucket,
            available=format_minor(b.available, b.currency),
            posted=format_minor(b.posted, b.currency),
            pending_in=format_minor(b.pending_in, b.currency),
            pending_out=format_minor(b.pending_out, b.currency),
            has_pending=bool(b.pending_in or b.pending_out),
        )
        for b in balances_of("client", str(client_id))
    ]
    return render(
        request,
        "portal/dashboard.html",
        {
            "client": client,
            "country_name": countries.name(client.country) or client.country,
            "kyc": kyc,
            "kyc_label": label,
            "kyc_tone": tone,
            "kyc_hint": hint,
            "balances": rows,
        },
    )
