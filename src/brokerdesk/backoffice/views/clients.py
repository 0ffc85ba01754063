"""Client search and the client 360 page."""

from __future__ import annotations

from uuid import UUID

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from brokerdesk.backoffice import read
from brokerdesk.backoffice.access import staff_page
from brokerdesk.backoffice.forms import ClientSearchForm
from brokerdesk.backoffice.views.common import is_htmx
from brokerdesk.clients import queries as client_queries
from brokerdesk.core.errors import NotFound
from brokerdesk.staff.roles import Role, has_role

# Every staff role works with clients (the role table gives each clients.view_client).
CLIENT_READERS: tuple[Role, ...] = tuple(Role)


@staff_page(*CLIENT_READERS)
def client_search(request: HttpRequest) -> HttpResponse:
    """Search clients; htmx refreshes the results as the member types."""
    form = ClientSearchForm(request.GET or None)
    text = form.cleaned_data["q"].strip() if form.is_valid() else ""
    results = client_queries.search_clients(text, limit=50)
    template = "backoffice/_client_results.html" if is_htmx(request) else "backoffice/clients.html"
    return render(request, template, {"form": form, "results": results, "q": text})


@staff_page(*CLIENT_READERS)
def client_detail(request: HttpRequest, client_id: UUID) -> HttpResponse:
    """Profile, KYC, wallets, trading accounts, IB, bonuses, tickets and the timeline."""
    try:
        view = read.client_360(client_id)
    except NotFound:
        return render(request, "backoffice/not_found.html", status=404)
    balances = [
        {
            "currency": b.currency,
            "bucket": b.bucket,
            "available": read.money(b.available, b.currency),
            "posted": read.money(b.posted, b.currency),
        }
        for b in view.balances
    ]
    return render(
        request,
        "backoffice/client_detail.html",
        {
            "v": view,
            "balances": balances,
            "deposits": [(d, read.money(d.amount, d.currency)) for d in view.deposits],
            "withdrawals": [(w, read.money(w.amount, w.currency)) for w in view.withdrawals],
            "can_review_kyc": has_role(request.user, Role.COMPLIANCE_OFFICER),
            "can_view_documents": has_role(request.user, Role.COMPLIANCE_OFFICER, Role.AUDITOR),
        },
    )
