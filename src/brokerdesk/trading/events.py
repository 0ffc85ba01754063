"""Events the trading module emits (stream ``trading``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from brokerdesk.core.bus.batch import batch_payload
from brokerdesk.core.events import DomainEvent

#: The fields of ``trading.deal_closed``, in payload order (a ``DealsClosed`` row's columns).
DEAL_CLOSED_FIELDS = (
    "server",
    "login",
    "deal",
    "position_id",
    "symbol",
    "action",
    "entry",
    "reason",
    "volume",
    "volume_ext",
    "volume_closed",
    "volume_closed_ext",
    "profit",
    "commission",
    "storage",
    "fee",
    "currency_digits",
    "time_msc",
)


@dataclass(frozen=True)
class DealClosed(DomainEvent):
    """``trading.deal_closed``: a closing trade deal (entry OUT, INOUT or OUT_BY) was stored.

    Emitted once per (server, deal ticket), in the transaction that stored the deal. For IB
    commissions (volume), bonuses (unlock conditions) and prop-firm rules (realised P/L).
    """

    type: ClassVar[str] = "trading.deal_closed"
    stream: ClassVar[str] = "trading"

    server: str
    login: int
    deal: int
    position_id: int
    symbol: str
    action: int
    entry: int
    reason: int
    volume: int
    volume_ext: int
    volume_closed: int
    volume_closed_ext: int
    profit: int
    commission: int
    storage: int
    fee: int
    currency_digits: int
    time_msc: int

    def aggregate_id(self) -> str:
        return f"{self.server}:{self.login}"

    def payload(self) -> dict[str, Any]:
        """Fields as JSON (built directly: this event is on the ingest hot path)."""
        return {
            "server": self.server,
            "login": self.login,
            "deal": self.deal,
            "position_id": self.position_id,
            "symbol": self.symbol,
            "action": self.action,
            "entry": self.entry,
            "reason": self.reason,
            "volume": self.volume,
            "volume_ext": self.volume_ext,
            "volume_closed": self.volume_closed,
            "volume_closed_ext": self.volume_closed_ext,
            "profit": self.profit,
            "commission": self.commission,
            "storage": self.storage,
            "fee": self.fee,
            "currency_digits": self.currency_digits,
            "time_msc": self.time_msc,
        }


@dataclass(frozen=True)
class DealsClosed(DomainEvent):
    """``trading.deal_closed`` for many deals as ONE event (one outbox row, one relay stamp,
    one bus item): the ingest's form, about one closing deal for every second deal stored.

    A batch event (:mod:`brokerdesk.core.bus.batch`): ``rows`` are ``DEAL_CLOSED_FIELDS``
    tuples; consumers receive one ``trading.deal_closed`` message per row, each with its own
    stable event id and aggregate id ``server:login``, exactly what ``DealClosed`` gives.
    """

    type: ClassVar[str] = "trading.deals_closed"
    stream: ClassVar[str] = "trading"

    rows: list[tuple[Any, ...]]

    def aggregate_id(self) -> str:
        return str(self.rows[0][0]) if self.rows else ""

    def payload(self) -> dict[str, Any]:
        """The columnar batch payload (its rows as one JSON text, see ``batch_payload``)."""
        return batch_payload(
            DealClosed.type, DEAL_CLOSED_FIELDS, self.rows, aggregate=("server", "login")
        )


@dataclass(frozen=True)
class DealCorrected(DomainEvent):
    """``trading.deal_corrected``: a dealer changed (``update``) or deleted (``delete``) a deal
    on the platform after it was stored.

    ``before`` is the deal as it was stored (and as ``trading.deal_closed`` reported it, if it
    is a closing trade); ``after`` is its new state, or None when deleted. ``delta`` is
    after - before of the money and volume fields plus the balance and credit change, minor
    units. Emitted once per applied correction, in the transaction that applied it; a stale or
    repeated correction emits nothing. Consumers that accrued on ``before`` (IB commissions,
    bonus turnover, prop-firm P/L) reverse it and, when ``after`` is not None, accrue on it.
    """

    type: ClassVar[str] = "trading.deal_corrected"
    stream: ClassVar[str] = "trading"

    server: str
    login: int
    deal: int
    change: str  # "update" | "delete"
    version_msc: int  # platform time of the correction (orders corrections of one deal)
    before: dict[str, Any]
    after: dict[str, Any] | None
    delta: dict[str, int]

    def aggregate_id(self) -> str:
        return f"{self.server}:{self.login}"


@dataclass(frozen=True)
class AccountOpened(DomainEvent):
    """``trading.account_opened``: a trading account (server, login) was linked to a client."""

    type: ClassVar[str] = "trading.account_opened"
    stream: ClassVar[str] = "trading"

    account_id: str
    client_id: str
    server: str
    login: int
    currency: str
    group: str
    leverage: int
    is_live: bool

    def aggregate_id(self) -> str:
        return self.account_id


@dataclass(frozen=True)
class TransferCompleted(DomainEvent):
    """``transfer.completed``: a wallet↔trading transfer reached a final state."""

    type: ClassVar[str] = "transfer.completed"
    stream: ClassVar[str] = "trading"

    transfer_id: str
    client_id: str
    account_id: str
    direction: str
    amount: int
    currency: str
    state: str  # completed | failed
    platform_ticket: int | None = None

    def aggregate_id(self) -> str:
        return self.transfer_id
