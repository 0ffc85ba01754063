"""Payment status machines: explicit transition tables; anything else is illegal."""

from __future__ import annotations

from brokerdesk.core.errors import IllegalTransition

DEPOSIT_TRANSITIONS: dict[str, frozenset[str]] = {
    # a fast PSP may confirm before we recorded "pending": initiated → confirmed/held/failed
    "initiated": frozenset({"pending", "confirmed", "held", "failed"}),
    "pending": frozenset({"confirmed", "held", "failed"}),
    "held": frozenset({"confirmed", "reversed"}),  # review/velocity hold, then released
    "confirmed": frozenset({"reversed"}),  # chargeback or failed settlement
    "failed": frozenset(),
    "reversed": frozenset(),
}

WITHDRAWAL_TRANSITIONS: dict[str, frozenset[str]] = {
    "requested": frozenset({"approved", "pending_approval", "rejected"}),
    "pending_approval": frozenset({"approved", "rejected"}),
    "approved": frozenset({"sent", "rejected"}),
    "sent": frozenset({"paid", "failed"}),
    "paid": frozenset({"returned"}),
    "rejected": frozenset(),
    "failed": frozenset(),
    "returned": frozenset(),
}

EXCEPTION_TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"in_review", "resolved"}),
    "in_review": frozenset({"resolved"}),
    "resolved": frozenset(),
}


def check(table: dict[str, frozenset[str]], what: str, current: str, target: str) -> None:
    """Raise ``IllegalTransition`` unless ``current → target`` is in ``table``."""
    if target not in table.get(current, frozenset()):
        allowed = ", ".join(sorted(table.get(current, ()))) or "nothing"
        raise IllegalTransition(
            f"A {what} that is {current} cannot become {target} (allowed: {allowed}).",
            field="status",
            current=current,
            target=target,
        )
