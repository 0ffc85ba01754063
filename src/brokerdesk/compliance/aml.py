"""AML transaction-monitoring rules: each looks at a new transaction and the client's history.

Thresholds come from the jurisdiction's rule set (``aml``, defaults in ``rules.DEFAULT_AML``).
A rule returns a ``Finding`` with a dedupe key, so re-running it never raises the same alert
twice. ``services.record_transaction`` turns findings into alerts and cases.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db.models import Sum
from rapidfuzz import fuzz

from brokerdesk.compliance.models import MonitoredTransaction
from brokerdesk.compliance.screening import normalise


@dataclass(frozen=True)
class Finding:
    """A rule fired."""

    rule: str
    severity: str  # low | medium | high
    summary: str
    dedupe_key: str
    details: dict[str, Any] = field(default_factory=dict)


def evaluate(tx: MonitoredTransaction, client: Any, t: dict[str, Any]) -> list[Finding]:
    """Every finding the rules make about ``tx`` (already stored) for ``client``."""
    history = MonitoredTransaction.objects.filter(client_id=tx.client_id).exclude(pk=tx.pk)
    findings: list[Finding] = []
    cid = tx.client_id
    if tx.kind == "deposit":
        limit = t["large_deposit"].get(tx.currency)
        if limit is not None and tx.amount >= limit:
            findings.append(
                Finding(
                    "large_deposit",
                    "medium",
                    f"Deposit of {tx.amount} {tx.currency} minor units (threshold {limit})",
                    f"large_deposit:{tx.event_id}",
                    {"amount": tx.amount, "currency": tx.currency, "threshold": limit},
                )
            )
        day_count = (
            1
            + history.filter(
                kind="deposit",
                occurred_at__gt=tx.occurred_at - timedelta(days=1),
                occurred_at__lte=tx.occurred_at,
            ).count()
        )
        if day_count >= t["velocity_per_day"]:
            findings.append(
                Finding(
                    "deposit_velocity",
                    "low",
                    f"{day_count} deposits within 24 hours",
                    f"deposit_velocity:{cid}:{tx.occurred_at.date()}",
                    {"count": day_count},
                )
            )
        if limit is not None:
            days = t["structuring_days"]
            floor = int(limit * t["structuring_band"])
            near = [tx.amount] if floor <= tx.amount < limit else []
            if near:
                near += list(
                    history.filter(
                        kind="deposit",
                        currency=tx.currency,
                        amount__gte=floor,
                        amount__lt=limit,
                        occurred_at__gt=tx.occurred_at - timedelta(days=days),
                        occurred_at__lte=tx.occurred_at,
                    ).values_list("amount", flat=True)
                )
            if len(near) >= t["structuring_count"]:
                window = tx.occurred_at.date().toordinal() // days
                findings.append(
                    Finding(
                        "structuring",
                        "high",
                        f"{len(near)} deposits just under the {limit} threshold in {days} days",
                        f"structuring:{cid}:{tx.currency}:{window}",
                        {"count": len(near), "threshold": limit},
                    )
                )
        previous = history.filter(occurred_at__lt=tx.occurred_at).order_by("-occurred_at").first()
        if previous is not None:
            idle = (tx.occurred_at - previous.occurred_at).days
            if idle >= t["dormancy_days"]:
                findings.append(
                    Finding(
                        "dormancy_break",
                        "low",
                        f"Deposit after {idle} days without activity",
                        f"dormancy_break:{tx.event_id}",
                        {"idle_days": idle},
                    )
                )
    else:
        window = timedelta(days=t["withdrawal_window_days"])
        recent = MonitoredTransaction.objects.filter(
            client_id=cid, currency=tx.currency, occurred_at__gt=tx.occurred_at - window
        )
        deposited = recent.filter(kind="deposit").aggregate(s=Sum("amount"))["s"] or 0
        withdrawn = recent.filter(kind="withdrawal").aggregate(s=Sum("amount"))["s"] or 0
        if deposited and withdrawn >= t["withdrawal_ratio"] * deposited:
            findings.append(
                Finding(
                    "deposit_then_withdrawal",
                    "medium",
                    f"Withdrew {withdrawn} of {deposited} deposited within "
                    f"{t['withdrawal_window_days']} days",
                    f"deposit_then_withdrawal:{tx.event_id}",
                    {"deposited": deposited, "withdrawn": withdrawn},
                )
            )
    if tx.method_fingerprint:
        sharing = (
            MonitoredTransaction.objects.filter(method_fingerprint=tx.method_fingerprint)
            .values("client_id")
            .distinct()
            .count()
        )
        if sharing >= t["shared_method_clients"]:
            findings.append(
                Finding(
                    "shared_payment_method",
                    "high",
                    f"The same payment method is used by {sharing} clients",
                    f"shared_payment_method:{cid}:{tx.method_fingerprint}",
                    {"clients": sharing},
                )
            )
    if tx.payer_name and client.display_name:
        score = fuzz.token_sort_ratio(normalise(tx.payer_name), normalise(client.display_name))
        if score < t["payer_name_min_score"]:
            findings.append(
                Finding(
                    "third_party_payer",
                    "medium",
                    f"Payer {tx.payer_name!r} does not match the client's name",
                    f"third_party_payer:{tx.event_id}",
                    {"payer_name": tx.payer_name, "similarity": round(score)},
                )
            )
    return findings
