"""Pages of bonuses: the client's "Bonuses" page (portal) and "Bonus campaigns" (back office).

Portal pages read only ``request.client_id``'s bonuses. Back-office pages: finance and admin
manage; auditors read (the forms are not shown to them and the commands refuse them anyway).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from brokerdesk.backoffice.access import staff_page
from brokerdesk.bonuses import queries, services
from brokerdesk.bonuses.forms import (
    CampaignForm,
    ForfeitForm,
    GrantFilterForm,
    GrantForm,
    PreviewForm,
    PromoForm,
    StatusForm,
)
from brokerdesk.core.errors import DomainError, NotFound
from brokerdesk.core.ids import new_id
from brokerdesk.core.money import Money
from brokerdesk.portal.access import client_page
from brokerdesk.portal.formatting import format_minor
from brokerdesk.staff.roles import Role, has_role

MANAGERS = (Role.FINANCE,)
READERS = (Role.FINANCE, Role.AUDITOR)


def _run(form: Any, command: Any) -> Any:
    """Run a command; a domain error becomes a form error on the field it names."""
    try:
        return command()
    except DomainError as error:
        form.add_error(error.field if error.field in form.fields else None, error.message)
        return None


def _money(amount: int, currency: str) -> str:
    return f"{format_minor(amount, currency)} {currency}"


def _rows(bonuses: list[queries.BonusView]) -> list[dict[str, Any]]:
    return [
        {
            "bonus": b,
            "amount": _money(b.amount, b.currency),
            "unlocked": _money(b.unlocked, b.currency),
            "forfeited": _money(b.forfeited, b.currency),
            "remaining": _money(b.remaining, b.currency),
        }
        for b in bonuses
    ]


def _history(items: list[queries.HistoryItem], currencies: dict[UUID, str]) -> list[dict]:
    return [
        {
            "item": h,
            "amount": _money(h.amount, currencies.get(h.bonus_id, "USD")) if h.amount else "",
        }
        for h in items
    ]


# ---------------------------------------------------------------------------- portal


@client_page
def portal_bonuses(request: HttpRequest) -> HttpResponse:
    """My bonuses, their unlock progress, their history with reasons, and a promo-code box."""
    client_id = request.client_id  # type: ignore[attr-defined]
    form = PromoForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        outcome = _run(
            form,
            lambda: services.redeem_promo(client_id, form.cleaned_data["code"], by=request.user),
        )
        if outcome is not None:
            if outcome.refusal is not None:
                form.add_error("code", outcome.refusal.message)
            else:
                if outcome.bonus_id:
                    messages.success(
                        request, _("Your promo code was accepted and your bonus granted.")
                    )
                else:
                    messages.success(
                        request,
                        _("Your promo code was accepted. It applies to your next deposit."),
                    )
                return redirect("bonuses:portal")
    bonuses = queries.bonuses_of(client_id)
    currencies = {b.id: b.currency for b in bonuses}
    context = {
        "rows": _rows(bonuses),
        "history": _history(queries.history_of(client_id), currencies),
        "decisions": [d for d in queries.decisions_of(client_id, limit=10) if not d.granted],
        "form": form,
        "preview_form": PreviewForm(
            initial={"currency": bonuses[0].currency if bonuses else "USD"}
        ),
    }
    status = 400 if request.method == "POST" else 200
    return render(request, "bonuses/portal.html", context, status=status)


@client_page
def portal_preview(request: HttpRequest) -> HttpResponse:
    """What a withdrawal of the typed amount would remove from my locked bonuses (a fragment
    for htmx, or the same as a page without it)."""
    client_id = request.client_id  # type: ignore[attr-defined]
    form = PreviewForm(request.GET)
    preview = None
    amount = ""
    lines: list[tuple[str, str]] = []
    if form.is_valid():
        currency = form.cleaned_data["currency"].strip().upper()
        try:
            minor = Money.parse(form.cleaned_data["amount"], currency).amount
        except DomainError as error:
            form.add_error("amount", error.message)
        else:
            preview = queries.forfeiture_preview(client_id, currency, minor)
            amount = _money(preview.forfeited, currency)
            lines = [(name, _money(value, currency)) for _, name, value in preview.bonuses]
    context = {"preview": preview, "forfeited": amount, "lines": lines, "preview_form": form}
    return render(request, "bonuses/_preview.html", context)


# ---------------------------------------------------------------------------- back office


def _campaign_choices() -> list[tuple[str, str]]:
    return [
        (str(c.id), f"{c.name} (v{c.version}, {c.currency})")
        for c in queries.campaigns(include_ended=False)
    ]


@staff_page(*READERS)
def campaigns(request: HttpRequest) -> HttpResponse:
    """Campaign list with their figures; finance and admin can create, pause and resume."""
    return _campaigns_page(
        request, CampaignForm(initial={"currency": "USD", "kyc_states": "approved"})
    )


def _campaigns_page(request: HttpRequest, form: CampaignForm, status: int = 200) -> HttpResponse:
    can_manage = has_role(request.user, *MANAGERS)
    rows = [
        {
            "campaign": c,
            "granted": _money(c.granted_total, c.currency),
            "budget": _money(c.budget, c.currency) if c.budget else "",
            "form": StatusForm(auto_id=f"s-{c.id.hex}-%s"),
        }
        for c in queries.campaigns()
    ]
    context = {"rows": rows, "form": form, "can_manage": can_manage}
    return render(request, "bonuses/campaigns.html", context, status=status)


@require_POST
@staff_page(*MANAGERS)
def campaign_create(request: HttpRequest) -> HttpResponse:
    """Create a campaign from the form."""
    form = CampaignForm(request.POST)
    if form.is_valid():
        created = _run(
            form,
            lambda: services.create_campaign(
                code=form.cleaned_data["code"], by=request.user, **form.terms()
            ),
        )
        if created is not None:
            messages.success(request, _("Campaign %(name)s created.") % {"name": created.name})
            return redirect("bonuses:campaigns")
    return _campaigns_page(request, form, status=400)


@require_POST
@staff_page(*MANAGERS)
def campaign_status(request: HttpRequest, campaign_id: UUID) -> HttpResponse:
    """Pause, resume or end a campaign with a reason."""
    form = StatusForm(request.POST)
    if form.is_valid():
        done = _run(
            form,
            lambda: services.set_campaign_status(
                campaign_id,
                form.cleaned_data["status"],
                by=request.user,
                reason=form.cleaned_data["reason"],
            ),
        )
        if done is not None:
            messages.success(
                request,
                _("Campaign %(name)s is now %(status)s.")
                % {"name": done.name, "status": done.get_status_display()},
            )
            return redirect("bonuses:campaigns")
    for error in form.errors.values():
        messages.error(request, " ".join(str(e) for e in error))
    return redirect("bonuses:campaigns")


@staff_page(*READERS)
def grants(request: HttpRequest) -> HttpResponse:
    """Grants with filters; finance and admin grant or forfeit with a reason."""
    return _grants_page(request, None)


def _grants_page(
    request: HttpRequest, grant_form: GrantForm | None, status: int = 200
) -> HttpResponse:
    choices = _campaign_choices()
    all_choices = [(str(c.id), f"{c.name} (v{c.version})") for c in queries.campaigns()]
    filters = GrantFilterForm(request.GET or None, campaigns=all_choices)
    wanted: dict[str, Any] = {}
    if filters.is_valid():
        data = filters.cleaned_data
        wanted = {
            "campaign_id": data.get("campaign") or None,
            "client_id": data.get("client_id"),
            "status": data.get("status") or None,
            "kind": data.get("kind") or None,
        }
    rows = _rows(queries.grants(**wanted))
    for row in rows:
        row["forfeit_form"] = ForfeitForm(
            initial={"request_key": new_id().hex}, auto_id=f"f-{row['bonus'].id.hex}-%s"
        )
    context = {
        "rows": rows,
        "filters": filters,
        "grant_form": grant_form
        or GrantForm(initial={"request_key": new_id().hex}, campaigns=choices),
        "can_manage": has_role(request.user, *MANAGERS),
    }
    return render(request, "bonuses/grants.html", context, status=status)


@require_POST
@staff_page(*MANAGERS)
def grant_create(request: HttpRequest) -> HttpResponse:
    """A manual grant with a reason."""
    form = GrantForm(request.POST, campaigns=_campaign_choices())
    if form.is_valid():
        data = form.cleaned_data
        try:
            currency = queries.get_campaign(data["campaign"]).currency
            amount = Money.parse(data["amount"], currency).amount
        except DomainError as error:
            form.add_error("amount", error.message)
            return _grants_page(request, form, status=400)
        outcome = _run(
            form,
            lambda: services.grant_manual(
                campaign_id=data["campaign"],
                client_id=data["client_id"],
                amount=amount,
                reason=data["reason"],
                by=request.user,
                request_key=data["request_key"],
            ),
        )
        if outcome is not None:
            messages.success(request, _("Bonus granted."))
            return redirect("bonuses:grants")
    return _grants_page(request, form, status=400)


@require_POST
@staff_page(*MANAGERS)
def bonus_forfeit(request: HttpRequest, bonus_id: UUID) -> HttpResponse:
    """Forfeit what is left of a bonus, with a reason."""
    form = ForfeitForm(request.POST)
    if form.is_valid():
        removed = _run(
            form,
            lambda: services.forfeit_manual(
                bonus_id,
                reason=form.cleaned_data["reason"],
                by=request.user,
                request_key=form.cleaned_data["request_key"],
            ),
        )
        if removed is not None:
            messages.success(request, _("The bonus was forfeited."))
            return redirect("bonuses:bonus_detail", bonus_id=bonus_id)
    for error in form.errors.values():
        messages.error(request, " ".join(str(e) for e in error))
    return redirect("bonuses:bonus_detail", bonus_id=bonus_id)


@staff_page(*READERS)
def bonus_detail(request: HttpRequest, bonus_id: UUID) -> HttpResponse:
    """One bonus: its figures and its full history (why it was granted, unlocked, removed)."""
    try:
        bonus = queries.get_bonus(bonus_id)
    except NotFound:
        return render(request, "backoffice/forbidden.html", status=404)
    items = queries.history_of(bonus.client_id, bonus_id=bonus_id, staff=True)
    context = {
        "row": _rows([bonus])[0],
        "history": _history(items, {bonus.id: bonus.currency}),
        "forfeit_form": ForfeitForm(initial={"request_key": new_id().hex}),
        "can_manage": has_role(request.user, *MANAGERS),
    }
    return render(request, "bonuses/bonus_detail.html", context)
