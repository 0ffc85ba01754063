"""Pages of propfirm.

Client portal (``client_page``): ``portal/challenges/`` — products to buy, the client's
challenges with live rule meters (an htmx fragment refreshed every 15 s), the reason a phase
ended, and the payout form of funded accounts.

Back office (``staff_page(Role.DEALING)``; admin holds every role): ``backoffice/prop/`` —
challenges with status and figures, and a manual fail/pass with a reason;
``backoffice/prop/products/`` — products, a form to create one, and revision of a product
(which writes its next version); ``backoffice/prop/corrections/`` — dealer corrections flagged
for review (closed with a note) and the ones reviewed lately.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from brokerdesk.backoffice.access import staff_page
from brokerdesk.backoffice.read import actor_names
from brokerdesk.core.errors import DomainError, NotFound
from brokerdesk.portal.access import client_page
from brokerdesk.portal.formatting import format_minor
from brokerdesk.propfirm import queries, services
from brokerdesk.propfirm.forms import (
    CorrectionReviewForm,
    DecisionForm,
    PayoutForm,
    PhaseForm,
    PhaseFormSet,
    ProductForm,
)
from brokerdesk.staff.roles import Role

DEALERS = (Role.DEALING,)
STATUS_FILTERS = ("active", "funded", "failed")


def _client_id(request: HttpRequest) -> UUID:
    client_id: UUID = request.client_id  # type: ignore[attr-defined]
    return client_id


# --- client portal -------------------------------------------------------------------------------


def _portal_context(request: HttpRequest) -> dict[str, Any]:
    from brokerdesk.payments.queries import withdrawal_methods

    client_id = _client_id(request)
    challenges = queries.challenges_of(client_id)
    methods = [
        (str(m.id), m.label) for m in withdrawal_methods(client_id)
    ]  # the same list for every funded account (return to source decides per currency)
    return {
        "products": queries.products(),
        "challenges": challenges,
        "payout_form": PayoutForm(initial={"request_id": uuid4().hex}, methods=methods),
        "payouts": queries.payouts_of(client_id),
        "buy_key": uuid4().hex,
    }


@client_page
def portal_challenges(request: HttpRequest) -> HttpResponse:
    """Products to buy and the client's challenges with their rule meters."""
    return render(request, "propfirm/portal_challenges.html", _portal_context(request))


@client_page
def portal_challenges_live(request: HttpRequest) -> HttpResponse:
    """The "my challenges" fragment alone (htmx polls it for fresh meters)."""
    return render(request, "propfirm/_my_challenges.html", _portal_context(request))


@require_POST
@client_page
def portal_buy(request: HttpRequest, product_id: UUID) -> HttpResponse:
    """Buy a product from the wallet; a double submit carries the same key (bought once)."""
    key = str(request.POST.get("request_id") or "")
    try:
        product = queries.product(product_id)
        challenge = services.purchase_challenge(
            _client_id(request), product_id, request_id=f"portal:{key}", by=request.user
        )
    except DomainError as error:
        messages.error(request, error.message)
        return redirect("propfirm:portal_challenges")
    messages.success(
        request,
        _("You bought %(name)s for %(price)s %(currency)s. Your account is being opened.")
        % {
            "name": product.name,
            "price": format_minor(challenge.price, challenge.currency),
            "currency": challenge.currency,
        },
    )
    return redirect("propfirm:portal_challenges")


@require_POST
@client_page
def portal_payout(request: HttpRequest, account_id: UUID) -> HttpResponse:
    """Ask for the profit share of a funded account."""
    from brokerdesk.payments.queries import withdrawal_methods

    client_id = _client_id(request)
    methods = [(str(m.id), m.label) for m in withdrawal_methods(client_id)]
    form = PayoutForm(request.POST, methods=methods)
    if not form.is_valid():
        messages.error(request, _("Please choose where to pay your share."))
        return redirect("propfirm:portal_challenges")
    try:
        payout = services.request_payout(
            account_id,
            client_id=client_id,
            request_id=f"portal:{form.cleaned_data['request_id']}:{account_id}",
            by=request.user,
            method_id=form.cleaned_data["method"] or None,
        )
    except DomainError as error:
        messages.error(request, error.message)
        return redirect("propfirm:portal_challenges")
    if payout.error:
        messages.warning(
            request,
            _("Your share of %(amount)s %(currency)s is in your wallet; the withdrawal was "
              "refused: %(error)s") % {"amount": format_minor(payout.trader_share, payout.currency),
                                       "currency": payout.currency, "error": payout.error},
        )  # fmt: skip
    else:
        messages.success(
            request,
            _("Your share of %(amount)s %(currency)s was paid to your wallet.")
            % {"amount": format_minor(payout.trader_share, payout.currency),
               "currency": payout.currency},
        )  # fmt: skip
    return redirect("propfirm:portal_challenges")


# --- back office ---------------------------------------------------------------------------------


@staff_page(*DEALERS)
def bo_challenges(request: HttpRequest) -> HttpResponse:
    """Challenges with status and figures; manual decisions on the active ones."""
    status = request.GET.get("status") or None
    if status not in STATUS_FILTERS:
        status = None
    rows = queries.all_challenges(status=status)
    return render(
        request,
        "propfirm/bo_challenges.html",
        {
            "challenges": rows,
            "to_review": queries.corrections_to_review_count(),
            "status": status or "",
            "filters": STATUS_FILTERS,
            "forms": {
                str(c.current.id): DecisionForm(auto_id=f"d-{c.current.id.hex}-%s")
                for c in rows
                if c.current is not None and c.current.status == "active"
            },
        },
    )


@require_POST
@staff_page(*DEALERS)
def bo_decide(request: HttpRequest, account_id: UUID) -> HttpResponse:
    """Fail or pass an active phase by hand, with a reason (audited)."""
    form = DecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("A decision and a reason are required."))
        return redirect("propfirm:bo_challenges")
    try:
        account = services.decide_manually(
            account_id,
            form.cleaned_data["outcome"],
            reason=form.cleaned_data["reason"],
            by=request.user,
        )
    except DomainError as error:
        messages.error(request, error.message)
        return redirect("propfirm:bo_challenges")
    messages.success(
        request,
        _("The %(phase)s phase of login %(login)s is now %(status)s.")
        % {"phase": account.phase_name, "login": account.login or "—", "status": account.status},
    )
    return redirect("propfirm:bo_challenges")


def _phase_formset(request: HttpRequest, product: queries.ProductView | None = None) -> Any:
    if request.method == "POST":
        return PhaseFormSet(request.POST, prefix="phase")
    initial = [PhaseForm.initial_for(p) for p in product.phases] if product else []
    return PhaseFormSet(prefix="phase", initial=initial)


def _save_product(
    request: HttpRequest, form: ProductForm, phases: Any, product: queries.ProductView | None
) -> bool:
    """Create or revise the product; False (errors on the form) when it was refused."""
    if not (form.is_valid() and phases.is_valid()):
        return False
    rows = [p for p in (f.phase() for f in phases.forms) if p is not None]
    fields = form.service_fields(rows)
    if fields is None:
        return False
    try:
        if product is None:
            services.create_product(by=request.user, **fields)
        else:
            services.revise_product(product.id, by=request.user, **fields)
    except DomainError as error:
        name = (error.field or "").split(".")[-1]
        form.add_error(name if name in form.fields else None, error.message)
        return False
    return True


@staff_page(*DEALERS)
def bo_products(request: HttpRequest) -> HttpResponse:
    """Every product version; a form to create a product."""
    form = ProductForm(request.POST or None)
    phases = _phase_formset(request)
    status = 200
    if request.method == "POST":
        if _save_product(request, form, phases, None):
            messages.success(request, _("The product was created."))
            return redirect("propfirm:bo_products")
        status = 400
    return render(
        request,
        "propfirm/bo_products.html",
        {"products": queries.products(active_only=False), "form": form, "phases": phases},
        status=status,
    )


@staff_page(*DEALERS)
def bo_product_edit(request: HttpRequest, product_id: UUID) -> HttpResponse:
    """Revise a product: the next version is written; bought challenges keep theirs."""
    try:
        product = queries.product(product_id)
    except NotFound:
        return render(request, "backoffice/not_found.html", status=404)
    form = ProductForm(request.POST or None, initial=ProductForm.initial_for(product))
    form.fields["code"].disabled = True
    phases = _phase_formset(request, product)
    status = 200
    if request.method == "POST":
        if _save_product(request, form, phases, product):
            messages.success(request, _("A new version of the product was saved."))
            return redirect("propfirm:bo_products")
        status = 400
    return render(
        request,
        "propfirm/bo_product_edit.html",
        {"product": product, "form": form, "phases": phases},
        status=status,
    )


@require_POST
@staff_page(*DEALERS)
def bo_product_active(request: HttpRequest, product_id: UUID) -> HttpResponse:
    """Start or stop selling a product version."""
    active = request.POST.get("active") == "1"
    try:
        services.set_product_active(product_id, active, by=request.user)
    except DomainError as error:
        messages.error(request, error.message)
    return redirect("propfirm:bo_products")


# --- dealer corrections ----------------------------------------------------------------------

RECENTLY_REVIEWED = 50
OUTCOME_LABELS = {
    "failed_on_correction": gettext_lazy("The corrected figures failed the phase"),
    "breach_not_confirmed": gettext_lazy("Failed, but the corrected figures show no breach"),
    "pass_not_confirmed": gettext_lazy("Passed, but the corrected figures do not pass"),
}


def _corrections_page(
    request: HttpRequest,
    *,
    bound: tuple[int, CorrectionReviewForm] | None = None,
    status: int = 200,
) -> HttpResponse:
    """The review queue and the recently reviewed corrections; ``bound``: the form that was
    refused (shown with its errors on its row)."""
    queue = queries.corrections(to_review=True)
    forms = {c.id: CorrectionReviewForm(auto_id=f"c-{c.id}-%s") for c in queue}
    if bound is not None and bound[0] in forms:
        forms[bound[0]] = bound[1]
    elif bound is not None:  # no longer queued (closed meanwhile): say what was wrong on top
        for errors in bound[1].errors.values():
            messages.error(request, str(errors[0]))
    reviewed = queries.corrections(reviewed=True, limit=RECENTLY_REVIEWED)
    names = actor_names([c.reviewed_by for c in reviewed])
    return render(
        request,
        "propfirm/bo_corrections.html",
        {
            "queue": [(c, forms[c.id]) for c in queue],
            "reviewed": [(c, names.get(c.reviewed_by, c.reviewed_by)) for c in reviewed],
            "outcomes": OUTCOME_LABELS,
        },
        status=status,
    )


@staff_page(*DEALERS)
def bo_corrections(request: HttpRequest) -> HttpResponse:
    """Dealer corrections that contradict or caused a decision, waiting for a dealer; and the
    ones reviewed lately (who, when, what they noted)."""
    return _corrections_page(request)


@require_POST
@staff_page(*DEALERS)
def bo_correction_resolve(request: HttpRequest, correction_id: int) -> HttpResponse:
    """Close a flagged correction with a note (audited); a missing note is shown on its row
    and nothing is written."""
    form = CorrectionReviewForm(request.POST, auto_id=f"c-{correction_id}-%s")
    if not form.is_valid():
        return _corrections_page(request, bound=(correction_id, form), status=400)
    try:
        entry = services.resolve_correction_review(
            correction_id, note=form.cleaned_data["note"], by=request.user
        )
    except DomainError as error:
        messages.error(request, error.message)
        return redirect("propfirm:bo_corrections")
    messages.success(
        request,
        _("The correction of deal #%(deal)s on login %(login)s is closed as reviewed.")
        % {"deal": entry.deal, "login": entry.account.login or "—"},
    )
    return redirect("propfirm:bo_corrections")
