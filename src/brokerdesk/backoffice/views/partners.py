"""Partner screens: commission approvals and IB management (tree, links, reassignments)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from brokerdesk.backoffice import read
from brokerdesk.backoffice.access import staff_page
from brokerdesk.backoffice.forms import (
    CommissionDecisionForm,
    CreateIBForm,
    CreateLinkForm,
    ReassignForm,
    ReassignmentDecisionForm,
)
from brokerdesk.backoffice.views.common import (
    error_status,
    flash_if_unshown,
    form_for_row,
    row_form,
    run_command,
)
from brokerdesk.core.errors import DomainError, NotFound
from brokerdesk.partners import queries as partner_queries
from brokerdesk.partners import services as partners
from brokerdesk.staff.roles import Role, actor_label

COMMISSION_DECIDERS = (Role.PARTNER_MANAGER, Role.FINANCE)
MANAGERS = (Role.PARTNER_MANAGER,)


# -- commission approvals ------------------------------------------------------------------


def _commission_context(failed: dict[str, Any] | None = None) -> dict[str, Any]:
    groups = []
    for g in partner_queries.accrual_groups():
        key = group_key(g.ib_id.hex, g.state, g.currency)
        initial = {
            "ib_id": g.ib_id,
            "state": g.state,
            "currency": g.currency,
            "action": "approve" if g.state == "accrued" else "make_payable",
        }
        form = form_for_row(CommissionDecisionForm, key, failed, initial=initial)
        groups.append({"group": g, "amount": read.money(g.amount, g.currency), "form": form})
    return {"groups": groups}


def group_key(ib_hex: str, state: str, currency: str) -> str:
    """The row key of one accrual batch."""
    return f"{ib_hex}-{state}-{currency}"


@staff_page(*COMMISSION_DECIDERS)
def commissions(request: HttpRequest) -> HttpResponse:
    """Accruals waiting for approval or to be made payable, grouped by IB."""
    return render(request, "backoffice/commissions.html", _commission_context())


@require_POST
@staff_page(*COMMISSION_DECIDERS)
def commission_decide(request: HttpRequest) -> HttpResponse:
    """Approve, make payable or cancel one IB's batch of accruals (all or none)."""
    key = group_key(
        request.POST.get("ib_id", "").replace("-", ""),
        request.POST.get("state", ""),
        request.POST.get("currency", ""),
    )
    form = row_form(CommissionDecisionForm, key, request.POST)
    error: DomainError | None = None
    if form.is_valid():
        data = form.cleaned_data
        group = next(
            (
                g
                for g in partner_queries.accrual_groups()
                if g.ib_id == data["ib_id"]
                and g.state == data["state"]
                and g.currency == data["currency"]
            ),
            None,
        )
        if group is None:
            form.add_error(None, _("These accruals have changed; reload the page."))
        else:
            ids = list(group.ids)
            action = data["action"]
            if action == "approve":
                _done, error = run_command(form, lambda: partners.approve(ids, by=request.user))
            elif action == "make_payable":
                _done, error = run_command(
                    form, lambda: partners.make_payable(ids, by=request.user)
                )
            else:
                _done, error = run_command(
                    form, lambda: partners.cancel(ids, by=request.user, reason=data["reason"])
                )
            if error is None and not form.errors:
                messages.success(
                    request,
                    _("%(count)s accruals of %(ib)s updated.")
                    % {"count": len(ids), "ib": group.ib_code},
                )
                return redirect("backoffice:commissions")
    context = flash_if_unshown(
        request, form, error, _commission_context({"target": key, "form": form})
    )
    return render(
        request,
        "backoffice/commissions.html",
        context,
        status=error_status(request, error, invalid=True),
    )


# -- IB management ----------------------------------------------------------------------------


def _ib_choices(rows: list[Any]) -> list[tuple[str, str]]:
    return [(str(r.id), f"{'— ' * r.depth}{r.name} ({r.code})") for r in rows]


def _ibs_context(
    request: HttpRequest,
    *,
    create_form: CreateIBForm | None = None,
    reassign_form: ReassignForm | None = None,
    failed: dict[str, Any] | None = None,
) -> dict[str, Any]:
    rows = partner_queries.all_ibs()
    choices = _ib_choices(rows)
    return {
        "ibs": rows,
        "create_form": create_form or CreateIBForm(parents=choices),
        "reassign_form": reassign_form or ReassignForm(ibs=choices),
        "pending": [
            {"request": r, "form": form_for_row(ReassignmentDecisionForm, r.id.hex, failed)}
            for r in partner_queries.reassignments(state="pending")
        ],
        "me": actor_label(request.user),
    }


@staff_page(*MANAGERS)
def ibs(request: HttpRequest) -> HttpResponse:
    """The IB tree, new IBs, client reassignments and the ones waiting for a second approver."""
    return render(request, "backoffice/ibs.html", _ibs_context(request))


@require_POST
@staff_page(*MANAGERS)
def ib_create(request: HttpRequest) -> HttpResponse:
    """Create an IB."""
    form = CreateIBForm(request.POST, parents=_ib_choices(partner_queries.all_ibs()))
    error: DomainError | None = None
    if form.is_valid():
        data = form.cleaned_data
        ib, error = run_command(
            form,
            lambda: partners.create_ib(
                code=data["code"],
                name=data["name"],
                parent_id=data["parent"] or None,
                currency=data["currency"],
                by=request.user,
            ),
        )
        if error is None:
            messages.success(request, _("IB %(code)s created.") % {"code": ib.code})
            return redirect("backoffice:ib_detail", ib_id=ib.pk)
    return render(
        request,
        "backoffice/ibs.html",
        _ibs_context(request, create_form=form),
        status=error_status(request, error, invalid=True),
    )


@require_POST
@staff_page(*MANAGERS)
def reassign(request: HttpRequest) -> HttpResponse:
    """Assign or reassign a client; after funding it waits for a second approver."""
    form = ReassignForm(request.POST, ibs=_ib_choices(partner_queries.all_ibs()))
    error: DomainError | None = None
    if form.is_valid():
        data = form.cleaned_data
        result, error = run_command(
            form,
            lambda: partners.request_reassignment(
                data["client_id"], data["to_ib"], by=request.user, reason=data["reason"]
            ),
        )
        if error is None:
            if result.state == "pending":
                messages.info(
                    request,
                    _("The client is funded: the move waits for a second approver."),
                )
            else:
                messages.success(request, _("The client was moved."))
            return redirect("backoffice:ibs")
    return render(
        request,
        "backoffice/ibs.html",
        _ibs_context(request, reassign_form=form),
        status=error_status(request, error, invalid=True),
    )


@require_POST
@staff_page(*MANAGERS)
def reassignment_decide(request: HttpRequest, request_id: UUID) -> HttpResponse:
    """The second approver applies or refuses a pending reassignment (never the requester)."""
    form = row_form(ReassignmentDecisionForm, request_id.hex, request.POST)
    error: DomainError | None = None
    if form.is_valid():
        reason = form.cleaned_data["reason"]
        if form.cleaned_data["decision"] == "approve":
            _done, error = run_command(
                form,
                lambda: partners.approve_reassignment(request_id, by=request.user, reason=reason),
            )
        else:
            _done, error = run_command(
                form,
                lambda: partners.reject_reassignment(request_id, by=request.user, reason=reason),
            )
        if error is None:
            messages.success(request, _("Reassignment decided."))
            return redirect("backoffice:ibs")
    context = _ibs_context(request, failed={"target": request_id.hex, "form": form})
    return render(
        request,
        "backoffice/ibs.html",
        flash_if_unshown(request, form, error, context),
        status=error_status(request, error, invalid=True),
    )


@staff_page(*MANAGERS)
def ib_detail(request: HttpRequest, ib_id: UUID) -> HttpResponse:
    """One IB: its subtree, referral links and promo codes, and a form for a new one."""
    form = CreateLinkForm(request.POST or None)
    error: DomainError | None = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        link, error = run_command(
            form,
            lambda: partners.create_link(
                ib_id,
                by=request.user,
                kind=data["kind"],
                code=data["code"] or None,
                campaign=data["campaign"],
            ),
        )
        if error is None:
            messages.success(request, _("Code %(code)s created.") % {"code": link.code})
            return redirect("backoffice:ib_detail", ib_id=ib_id)
    rows = partner_queries.all_ibs()
    ib = next((r for r in rows if r.id == ib_id), None)
    if ib is None:
        return render(request, "backoffice/not_found.html", status=404)
    subtree = _subtree(rows, ib_id)
    try:
        links = partner_queries.links_of(ib_id)
    except NotFound:
        links = []
    return render(
        request,
        "backoffice/ib_detail.html",
        {"ib": ib, "subtree": subtree, "links": links, "form": form},
        status=error_status(request, error, invalid=request.method == "POST"),
    )


def _subtree(rows: list[Any], ib_id: UUID) -> list[Any]:
    """``rows`` is in tree order: the subtree is the IB and the deeper rows right after it."""
    out: list[Any] = []
    for row in rows:
        if row.id == ib_id or (out and row.depth > out[0].depth):
            out.append(row)
        elif out:
            break
    return out
