"""Forms of the back-office screens (every control labelled; reasons are mandatory)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _


class ReasonField(forms.CharField):
    """A mandatory free-text reason (kept in the audit log)."""

    def __init__(self, label: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 2}))
        kwargs.setdefault("max_length", 500)
        super().__init__(
            label=label or _("Reason"),
            required=True,
            error_messages={"required": _("Give a reason: it is kept in the audit log.")},
            **kwargs,
        )


class ClientSearchForm(forms.Form):
    """Find clients by name, e-mail or id."""

    q = forms.CharField(label=_("Name, e-mail or client id"), required=False, max_length=200)


class KycDecisionForm(forms.Form):
    """A compliance officer's decision on a client's KYC file."""

    DECISIONS = (
        ("approve", _("Approve")),
        ("reject", _("Reject")),
        ("request_documents", _("Ask for more documents")),
    )
    decision = forms.ChoiceField(label=_("Decision"), choices=DECISIONS)
    reason = ReasonField()
    final = forms.BooleanField(
        label=_("Final rejection (the client may not try again)"), required=False
    )


class DocumentReviewForm(forms.Form):
    """Accept or reject one document."""

    accepted = forms.TypedChoiceField(
        label=_("Document decision"),
        choices=(("1", _("Accept")), ("0", _("Reject"))),
        coerce=lambda v: v == "1",
    )
    note = forms.CharField(
        label=_("Note to the client (required to reject)"),
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2}),
    )


class WithdrawalDecisionForm(forms.Form):
    """A checker's decision on a withdrawal."""

    decision = forms.ChoiceField(
        label=_("Decision"), choices=(("approve", _("Approve")), ("reject", _("Reject")))
    )
    reason = ReasonField()


class CaseNoteForm(forms.Form):
    """An investigator's note on a case."""

    text = ReasonField(label=_("Note"))


class CaseCloseForm(forms.Form):
    """Close an investigator case with its outcome."""

    outcome = forms.ChoiceField(
        label=_("Outcome"),
        choices=(
            ("false_positive", _("False positive")),
            ("valuable_alert", _("Valuable alert")),
            ("confirmed_risk", _("Confirmed risk")),
            ("sar_filed", _("Suspicious activity report filed")),
        ),
    )
    reason = ReasonField()


class HitResolveForm(forms.Form):
    """Confirm or dismiss a possible sanctions match."""

    confirmed = forms.TypedChoiceField(
        label=_("Match decision"),
        choices=(("0", _("Dismiss: not the listed person")), ("1", _("Confirm the match"))),
        coerce=lambda v: v == "1",
    )
    note = ReasonField(label=_("Note"))


class ResolveForm(forms.Form):
    """Resolve a reconciliation exception."""

    note = ReasonField(label=_("Resolution note"))


class CommissionDecisionForm(forms.Form):
    """Move a batch of accruals one step (approve, make payable) or cancel it."""

    ib_id = forms.UUIDField(widget=forms.HiddenInput)
    state = forms.CharField(widget=forms.HiddenInput)
    currency = forms.CharField(widget=forms.HiddenInput)
    action = forms.ChoiceField(
        label=_("Action"),
        choices=(
            ("approve", _("Approve")),
            ("make_payable", _("Make payable")),
            ("cancel", _("Cancel")),
        ),
    )
    reason = forms.CharField(label=_("Reason (required to cancel)"), required=False, max_length=500)


class CreateIBForm(forms.Form):
    """A new IB, at the top of the tree or under a parent."""

    code = forms.SlugField(label=_("Code"), max_length=60)
    name = forms.CharField(label=_("Name"), max_length=200)
    parent = forms.ChoiceField(label=_("Parent IB"), required=False)
    currency = forms.CharField(label=_("Commission currency"), max_length=5, initial="USD")

    def __init__(self, *args: object, parents: list[tuple[str, str]], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["parent"].choices = [("", _("None (top level)")), *parents]  # type: ignore[attr-defined]


class CreateLinkForm(forms.Form):
    """A referral link or promo code for an IB."""

    kind = forms.ChoiceField(
        label=_("Kind"), choices=(("link", _("Referral link")), ("promo", _("Promo code")))
    )
    code = forms.CharField(
        label=_("Code (leave empty for a random one)"), required=False, max_length=60
    )
    campaign = forms.CharField(label=_("Campaign"), required=False, max_length=100)


class ReassignForm(forms.Form):
    """Move a client to another IB."""

    client_id = forms.UUIDField(label=_("Client id"))
    to_ib = forms.ChoiceField(label=_("New IB"))
    reason = ReasonField()

    def __init__(self, *args: object, ibs: list[tuple[str, str]], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["to_ib"].choices = ibs  # type: ignore[attr-defined]


class ReassignmentDecisionForm(forms.Form):
    """The second approver's decision on a reassignment."""

    decision = forms.ChoiceField(
        label=_("Decision"), choices=(("approve", _("Approve")), ("reject", _("Reject")))
    )
    reason = forms.CharField(label=_("Reason (required to reject)"), required=False, max_length=500)


class AuditFilterForm(forms.Form):
    """Filters of the audit-log viewer."""

    actor = forms.CharField(
        label=_("Actor (e-mail or audit label)"), required=False, max_length=200
    )
    object_type = forms.CharField(label=_("Object type"), required=False, max_length=100)
    object_id = forms.CharField(label=_("Object id"), required=False, max_length=100)
    action = forms.CharField(label=_("Action starts with"), required=False, max_length=100)
    since = forms.DateField(
        label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        label=_("To (inclusive)"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )

    def clean(self) -> dict[str, object]:
        """``From`` may not be after ``To``."""
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", _("The end date is before the start date."))
        return data
