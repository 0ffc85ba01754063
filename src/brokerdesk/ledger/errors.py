"""The ledger's domain errors, each with a stable code and the field at fault."""

from __future__ import annotations

from brokerdesk.core.errors import Conflict, DomainError, NotFound, ValidationError


class InvalidAmount(ValidationError):
    """An amount is zero, negative or not a whole number of minor units."""

    code = "invalid_amount"


class Unbalanced(ValidationError):
    """Debits and credits of a transfer differ."""

    code = "unbalanced"


class MixedCurrencies(ValidationError):
    """A transfer's legs are in more than one currency; use an FX conversion."""

    code = "mixed_currencies"


class AccountNotFound(NotFound):
    """A leg names an account that does not exist."""

    code = "account_not_found"


class InsufficientFunds(Conflict):
    """An account flagged no-negative would go below zero."""

    code = "insufficient_funds"


class LimitExceeded(Conflict):
    """An account flagged no-positive would go above zero."""

    code = "limit_exceeded"


class IdempotencyConflict(Conflict):
    """The idempotency key was used before for a different request."""

    code = "idempotency_conflict"


class PendingNotFound(NotFound):
    """No pending transfer has that id."""

    code = "pending_not_found"


class PendingResolved(Conflict):
    """The pending transfer was already posted, voided or expired."""

    code = "pending_already_resolved"


class PendingExpired(Conflict):
    """The pending transfer's timeout has passed."""

    code = "pending_expired"


class AlreadyReversed(Conflict):
    """The transfer has been reversed already."""

    code = "already_reversed"


class LinkedTransferFailed(DomainError):
    """Another transfer of the same linked chain failed, so this one was not posted."""

    code = "linked_transfer_failed"
