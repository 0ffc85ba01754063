"""Commands of the partners module: the only functions that write its tables.

They live in topic modules and are gathered here: the hierarchy (``hierarchy``), attribution
(``attribution``), plans (``plans``) and the accrual engine with its state machine
(``accrual``), with dealer corrections (``corrections``). Each runs in one transaction, audits
operator actions and raises domain errors.
"""

from __future__ import annotations

from brokerdesk.partners.accrual import (
    accrue_deals,
    adjust,
    approve,
    cancel,
    make_payable,
    pay_ib,
    transition,
)
from brokerdesk.partners.attribution import (
    approve_reassignment,
    attribute_at_registration,
    create_link,
    record_funding,
    referral_token,
    reject_reassignment,
    request_reassignment,
    resolve_token,
)
from brokerdesk.partners.corrections import apply_corrections
from brokerdesk.partners.hierarchy import create_ib, move_subtree, set_status
from brokerdesk.partners.plans import assign_plan, create_plan, publish_version

__all__ = [
    "accrue_deals",
    "adjust",
    "apply_corrections",
    "approve",
    "approve_reassignment",
    "assign_plan",
    "attribute_at_registration",
    "cancel",
    "create_ib",
    "create_link",
    "create_plan",
    "make_payable",
    "move_subtree",
    "pay_ib",
    "publish_version",
    "record_funding",
    "referral_token",
    "reject_reassignment",
    "request_reassignment",
    "resolve_token",
    "set_status",
    "transition",
]
