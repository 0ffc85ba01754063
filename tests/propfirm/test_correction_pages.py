"""The back office's review of dealer corrections: who may see it, what a dealer sees, and
closing a flagged correction with a note (refused without one, writing nothing)."""

from __future__ import annotations

import pytest
from django.test import Client as HttpClient

from brokerdesk.core import clock
from brokerdesk.core.models import AuditEntry
from brokerdesk.propfirm import services
from brokerdesk.propfirm.models import PhaseAccount, PhaseDealCorrection, PhaseStatus
from brokerdesk.staff.roles import Role
from tests.clients.factories import user
from tests.partners.conftest import make_ib
from tests.propfirm.conftest import EVALUATION, FUNDED, T0, Platform, deal, msc, started_account
from tests.propfirm.test_corrections import HOUR_MS, consume, corrected
from tests.propfirm.test_pages import client_session, staff_session
from tests.web.conftest import verified_user

pytestmark = pytest.mark.django_db

PAGE = "/backoffice/prop/corrections/"


def flagged_breach(platform: Platform) -> PhaseDealCorrection:
    """A phase failed on a 600.00 loss that a dealer then corrects to 300.00: flagged."""
    with clock.frozen(T0):
        _, account = started_account(platform)
        assert account.login is not None
        loss = deal(account, -600_00, msc(T0) + HOUR_MS)
        consume(loss, kind="trading.deal_closed")
        services.record_equity(account.server, account.login, equity=9_400_00,
                               balance=9_400_00, at_msc=msc(T0) + HOUR_MS + 60_000)  # fmt: skip
        consume(corrected(loss, msc(T0) + 2 * HOUR_MS, profit=-300_00))
    entry = PhaseDealCorrection.objects.get(account=account)
    assert entry.outcome == "breach_not_confirmed" and entry.review
    return entry


def flagged_pass(platform: Platform) -> PhaseDealCorrection:
    """A phase passed on a 900.00 win that a dealer then lowers to 500.00: flagged."""
    with clock.frozen(T0):
        _, account = started_account(platform, EVALUATION, FUNDED)
        win = deal(account, 700_00, msc(T0) + HOUR_MS)
        consume(win, kind="trading.deal_closed")
        raised = corrected(win, msc(T0) + 2 * HOUR_MS, profit=900_00)
        consume(raised)
        consume(corrected(win, msc(T0) + 3 * HOUR_MS, before=raised["after"], profit=500_00))
    entry = PhaseDealCorrection.objects.get(account=account, review=True)
    assert entry.outcome == "pass_not_confirmed"
    return entry


def test_a_dealer_sees_a_flagged_correction_with_its_figures_in_money(client, platform):
    entry = flagged_breach(platform)
    staff_session(client, Role.DEALING)

    challenges = client.get("/backoffice/prop/").content.decode()
    assert f'href="{PAGE}"' in challenges and "Corrections to review" in challenges

    page = client.get(PAGE)
    html = page.content.decode()
    assert page.status_code == 200
    assert f'data-correction="{entry.pk}"' in html
    assert f"Deal #{entry.deal} on sim:{entry.account.login}" in html
    assert "10K Challenge · Evaluation" in html
    # minor units formatted as money (a no-break space before the currency)
    assert "-600.00\N{NO-BREAK SPACE}USD" in html and "-300.00\N{NO-BREAK SPACE}USD" in html
    assert "Failed, but the corrected figures show no breach" in html
    assert "Daily loss 6.0% exceeds 5%" in html  # the decision the phase still holds
    assert "Deal updated" in html and "None reviewed yet." in html


def test_only_flagged_corrections_wait_and_a_lowered_pass_is_explained(client, platform):
    entry = flagged_pass(platform)  # its first correction passed the phase: not flagged
    staff_session(client, Role.DEALING)

    html = client.get(PAGE).content.decode()
    assert html.count("data-correction=") == 1 and f'data-correction="{entry.pk}"' in html
    assert "Passed, but the corrected figures do not pass" in html
    assert "Profit target reached: 900.00 of 800.00" in html  # the pass the phase holds
    assert "The profit target is not reached." in html
    assert (
        '<span class="badge badge-warning">1</span>'
        in client.get("/backoffice/prop/").content.decode()
    )


def test_closing_a_correction_needs_a_note_and_is_then_listed_as_reviewed(client, platform):
    entry = flagged_breach(platform)
    dealer = staff_session(client, Role.DEALING)
    resolve = f"{PAGE}{entry.pk}/resolve/"

    blank = client.post(resolve, {"note": "   "})
    assert blank.status_code == 400
    assert "Write a note: what you checked and what you did." in blank.content.decode()
    entry.refresh_from_db()
    assert entry.reviewed_at is None and entry.review_note == ""
    assert not AuditEntry.objects.filter(action="propfirm.correction_reviewed").exists()

    done = client.post(resolve, {"note": "Reinstated the phase by hand on the platform."},
                       follow=True)  # fmt: skip
    html = done.content.decode()
    assert done.redirect_chain[-1][0] == PAGE
    assert f"The correction of deal #{entry.deal} on login {entry.account.login} is closed" in html
    assert "Nothing to review." in html
    reviewed = html.split('data-testid="corrections-reviewed"')[1]
    assert "Reinstated the phase by hand on the platform." in reviewed
    assert dealer.email in reviewed  # who closed it, by name rather than audit label
    entry.refresh_from_db()
    assert entry.reviewed_at is not None
    assert AuditEntry.objects.filter(action="propfirm.correction_reviewed").count() == 1
    assert PhaseAccount.objects.get(pk=entry.account_id).status == PhaseStatus.FAILED


def test_closing_twice_or_an_unknown_correction_explains_and_changes_nothing(client, platform):
    entry = flagged_breach(platform)
    staff_session(client, Role.DEALING)
    client.post(f"{PAGE}{entry.pk}/resolve/", {"note": "Checked."})

    again = client.post(f"{PAGE}{entry.pk}/resolve/", {"note": "Again"}, follow=True)
    unknown = client.post(f"{PAGE}999999/resolve/", {"note": "Who?"}, follow=True)
    blank = client.post(f"{PAGE}{entry.pk}/resolve/", {"note": ""})  # closed meanwhile

    assert "This correction is not waiting for review." in again.content.decode()
    assert "No such correction." in unknown.content.decode()
    assert blank.status_code == 400 and "Write a note" in blank.content.decode()
    entry.refresh_from_db()
    assert entry.review_note == "Checked."
    assert AuditEntry.objects.filter(action="propfirm.correction_reviewed").count() == 1


@pytest.mark.parametrize("role", [Role.FINANCE, Role.SUPPORT, Role.COMPLIANCE_OFFICER])
def test_other_staff_roles_cannot_see_or_close_corrections(client, platform, role):
    entry = flagged_breach(platform)
    staff_session(client, role)

    assert client.get(PAGE).status_code == 403
    assert client.post(f"{PAGE}{entry.pk}/resolve/", {"note": "x"}).status_code == 403
    entry.refresh_from_db()
    assert entry.reviewed_at is None


def test_clients_partners_and_visitors_cannot_reach_the_corrections_page(client, platform):
    entry = flagged_breach(platform)
    client_session(client)
    assert client.get(PAGE).status_code == 403
    assert client.post(f"{PAGE}{entry.pk}/resolve/", {"note": "x"}).status_code == 403

    partner_user = verified_user()
    make_ib(user_id=partner_user.pk)  # an introducing broker with a partner-portal login
    partner = HttpClient()
    partner.force_login(partner_user)
    assert partner.get(PAGE).status_code == 403
    assert partner.post(f"{PAGE}{entry.pk}/resolve/", {"note": "x"}).status_code == 403

    anonymous = HttpClient().get(PAGE)
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    entry.refresh_from_db()
    assert entry.reviewed_at is None


def test_an_administrator_may_review_corrections(client, platform):
    flagged_breach(platform)
    client.force_login(user("admin"))
    assert client.get(PAGE).status_code == 200
