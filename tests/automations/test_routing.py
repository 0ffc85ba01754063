"""The payments hook the automations route withdrawals with (``route_withdrawal``)."""

from __future__ import annotations

from typing import Any

import pytest

from brokerdesk.core.errors import IllegalTransition, PermissionDenied, ValidationError
from brokerdesk.core.models import AuditEntry
from brokerdesk.payments import queries as payment_queries
from brokerdesk.payments import services as payments
from tests.clients.factories import user
from tests.payments.conftest import funded, new_client

pytestmark = pytest.mark.django_db


def waiting_withdrawal(psp: Any, amount: int = 20_000) -> Any:
    payments.set_rules(auto_approve_up_to=0)
    client = new_client(verified=True)
    deposit = funded(psp, client, 50_000)
    return payments.request_withdrawal(
        client.pk,
        amount=amount,
        currency="USD",
        method_id=deposit.method_id,
        request_id=f"route-{client.pk}",
        by=f"client:{client.pk}",
    )


def test_the_auto_approve_lane_approves_a_waiting_withdrawal_with_an_audited_reason(local_psp):
    waiting = waiting_withdrawal(local_psp)
    assert waiting.status == "pending_approval"

    routed = payments.route_withdrawal(
        waiting.id, lane="auto_approve", by="system:automations:r1", reason="low risk"
    )

    assert routed.status == "approved" and routed.approved_by == "system:automations:r1"
    entry = AuditEntry.objects.filter(object_id=str(waiting.id)).latest("seq")
    assert (entry.action, entry.reason) == ("payments.withdrawal.approved", "low risk")


def test_manual_review_keeps_a_waiting_withdrawal_waiting(local_psp):
    waiting = waiting_withdrawal(local_psp)
    routed = payments.route_withdrawal(
        waiting.id, lane="manual_review", by="system:automations:r1", reason="high risk"
    )
    assert routed.status == "pending_approval"


def test_routing_refuses_bad_lanes_missing_reasons_other_roles_and_approved_ones(local_psp):
    waiting = waiting_withdrawal(local_psp)
    with pytest.raises(ValidationError) as lane:
        payments.route_withdrawal(waiting.id, lane="fast", by="system:x", reason="r")
    assert lane.value.field == "lane"
    with pytest.raises(ValidationError) as reason:
        payments.route_withdrawal(waiting.id, lane="auto_approve", by="system:x", reason=" ")
    assert reason.value.field == "reason"
    with pytest.raises(PermissionDenied):
        payments.route_withdrawal(waiting.id, lane="auto_approve", by=user("support"), reason="r")
    payments.route_withdrawal(waiting.id, lane="auto_approve", by=user("finance"), reason="ok")
    with pytest.raises(IllegalTransition):
        payments.route_withdrawal(waiting.id, lane="manual_review", by="system:x", reason="r")
    assert payment_queries.get_withdrawal(waiting.id).status == "approved"
