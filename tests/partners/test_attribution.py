"""Attribution: first touch locked at registration; reassignment with reason and approver."""

from __future__ import annotations

from datetime import timedelta

import pytest

from brokerdesk.core import clock
from brokerdesk.core.errors import Conflict, PermissionDenied
from brokerdesk.core.models import AuditEntry
from brokerdesk.partners import attribution
from brokerdesk.partners.models import Attribution, ReassignmentState
from tests.clients.factories import individual, user
from tests.partners.conftest import T0, make_ib

pytestmark = pytest.mark.django_db


def test_a_link_click_days_before_registration_still_attributes_the_client():
    ib = make_ib()
    link = attribution.create_link(ib.pk, by="system:test")
    with clock.frozen(T0) as c:
        token = attribution.referral_token(link.code)
        c.advance(timedelta(days=20))
        client = individual()
        result = attribution.attribute_at_registration(client.pk, token=token)

    assert result.attribution is not None and result.attribution.ib_id == ib.pk
    assert result.attribution.touched_at == T0
    assert result.attribution.client_label.endswith(".")  # "Maria I." — no full name


def test_first_touch_wins_over_a_later_promo_code_and_stays_locked():
    first, second = make_ib(), make_ib()
    link = attribution.create_link(first.pk, by="system:test")
    promo = attribution.create_link(second.pk, by="system:test", kind="promo", code="spring")
    client = individual()

    result = attribution.attribute_at_registration(
        client.pk, token=attribution.referral_token(link.code), promo_code=promo.code.lower()
    )
    again = attribution.attribute_at_registration(client.pk, promo_code="SPRING")

    assert result.attribution.ib_id == first.pk
    assert again.attribution.ib_id == first.pk and "already_attributed" in again.ignored


def test_an_expired_or_forged_token_is_ignored_and_the_promo_code_applies():
    first, second = make_ib(), make_ib()
    link = attribution.create_link(first.pk, by="system:test")
    attribution.create_link(second.pk, by="system:test", kind="promo", code="PROMO1")
    with clock.frozen(T0):
        token = attribution.referral_token(link.code)
    client, other = individual(), individual()

    expired = attribution.attribute_at_registration(client.pk, token=token, promo_code="PROMO1")
    forged = attribution.attribute_at_registration(other.pk, token=token[:-2] + "xx")

    assert expired.attribution.ib_id == second.pk and "referral_expired" in expired.ignored
    assert forged.attribution is None and forged.ignored == ("referral_invalid",)


def test_reassignment_needs_a_partner_manager_and_a_reason():
    ib, other = make_ib(), make_ib()
    client = individual()
    attribution.request_reassignment(
        client.pk, ib.pk, by=user("partner_manager"), reason="signed form"
    )
    with pytest.raises(PermissionDenied):
        attribution.request_reassignment(client.pk, other.pk, by=user("support"), reason="x")
    assert Attribution.objects.get(client_id=client.pk).ib_id == ib.pk
    assert AuditEntry.objects.filter(action="partners.client_reassigned").count() == 1


def test_after_funding_a_reassignment_waits_for_a_different_approver():
    ib, other = make_ib(), make_ib()
    client = individual()
    maker, checker = user("partner_manager"), user("partner_manager")
    attribution.request_reassignment(client.pk, ib.pk, by=maker, reason="initial")
    attribution.record_funding(client.pk, amount=50_000, currency="USD", reference="dep-1", at=T0)

    request = attribution.request_reassignment(
        client.pk, other.pk, by=maker, reason="IB dispute settled"
    )
    assert request.state == ReassignmentState.PENDING
    assert Attribution.objects.get(client_id=client.pk).ib_id == ib.pk
    with pytest.raises(PermissionDenied) as err:
        attribution.approve_reassignment(request.pk, by=maker)
    assert err.value.code == "same_approver"
    with pytest.raises(Conflict):
        attribution.request_reassignment(client.pk, ib.pk, by=maker, reason="again")

    attribution.approve_reassignment(request.pk, by=checker, reason="checked the contract")

    moved = Attribution.objects.get(client_id=client.pk)
    assert moved.ib_id == other.pk and moved.source == "manual"
    entry = AuditEntry.objects.filter(action="partners.client_reassigned").last()
    assert entry.after["approved_by"] == f"user:{checker.pk}"


def test_first_deposit_is_recorded_once():
    client = individual()
    assert attribution.record_funding(client.pk, amount=100, currency="USD", reference="a", at=T0)
    assert not attribution.record_funding(
        client.pk, amount=900, currency="USD", reference="b", at=T0
    )


def test_a_system_actor_cannot_be_the_second_approver():
    ib, other = make_ib(), make_ib()
    client = individual()
    attribution.request_reassignment(client.pk, ib.pk, by="system:test", reason="initial")
    attribution.record_funding(client.pk, amount=100, currency="USD", reference="x", at=T0)
    request = attribution.request_reassignment(
        client.pk, other.pk, by=user("partner_manager"), reason="move"
    )
    with pytest.raises(PermissionDenied) as err:
        attribution.approve_reassignment(request.pk, by="system:robot")
    assert err.value.code == "approver_required"
    with pytest.raises(PermissionDenied):
        attribution.request_reassignment(client.pk, other.pk, by="alice", reason="no role")
