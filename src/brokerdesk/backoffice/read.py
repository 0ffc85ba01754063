"""Read models of the staff screens, composed from the owning modules' queries.

The back office owns no tables: every figure here comes from another module's ``queries``
(or, for optional modules that may not be installed yet, from their contract functions when
they exist). Nothing here writes.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

from brokerdesk.clients import queries as client_queries
from brokerdesk.compliance import queries as compliance_queries
from brokerdesk.core import clock
from brokerdesk.core.money import get_currency
from brokerdesk.ledger import queries as ledger_queries
from brokerdesk.payments import queries as payment_queries
from brokerdesk.portal.formatting import format_minor

log = logging.getLogger(__name__)

# KYC states whose clients wait for a compliance officer.
KYC_REVIEW_STATES = ("under_verification", "manual_review")


def optional_query(module: str, name: str) -> Callable[..., Any] | None:
    """``module.name`` when that module (built by another team) provides it, else ``None``."""
    try:
        found = getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None
    return found if callable(found) else None


def money(amount: int | None, currency: str) -> str:
    """Minor units as a localised amount with its currency code ("—" for nothing)."""
    if amount is None:
        return "—"
    return f"{format_minor(amount, currency)} {currency}"


def major(amount: int, currency: str) -> str:
    """Minor units as a plain decimal string for charts (``"1234.56"``; no float involved)."""
    scale = get_currency(currency).scale
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**scale)
    return f"{sign}{whole}.{frac:0{scale}d}" if scale else f"{sign}{whole}"


def actor_names(labels: list[str]) -> dict[str, str]:
    """People's e-mail addresses for ``user:<id>`` audit labels (other labels stay as they are)."""
    from django.contrib.auth import get_user_model

    ids = {int(label[5:]) for label in labels if label.startswith("user:") and label[5:].isdigit()}
    found = dict(get_user_model().objects.filter(pk__in=ids).values_list("pk", "email"))
    return {
        label: (found.get(int(label[5:])) or label)
        if label.startswith("user:") and label[5:].isdigit()
        else label
        for label in labels
    }


def actor_label_for(text: str) -> str:
    """The audit label of what a person typed: an e-mail address becomes ``user:<id>``."""
    from django.contrib.auth import get_user_model

    text = text.strip()
    if "@" not in text:
        return text
    pk = get_user_model().objects.filter(email__iexact=text).values_list("pk", flat=True).first()
    return f"user:{pk}" if pk is not None else text


# -- dashboard -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DayFigures:
    """One day of the dashboard chart in the chosen currency."""

    day: date
    deposits: int
    withdrawals: int
    net: int
    new_clients: int


@dataclass(frozen=True)
class QueueSize:
    """A work queue and how many items wait in it."""

    label: str
    count: int
    url_name: str
    roles: tuple[str, ...]  # who may open it (admin always)


@dataclass(frozen=True)
class LagRow:
    """One consumer's backlog on one stream."""

    stream: str
    group: str
    undelivered: int
    pending: int


@dataclass
class Dashboard:
    """Everything the dashboard shows."""

    currency: str
    currencies: list[str]
    days: list[DayFigures]
    queues: list[QueueSize]
    lag: list[LagRow] | None  # None: the bus could not be asked
    unrelayed: int | None
    totals: dict[str, int] = field(default_factory=dict)


def daily_figures(days: int, currency: str | None) -> tuple[str, list[str], list[DayFigures]]:
    """The last ``days`` UTC days of deposits, withdrawals, net and registrations."""
    today = clock.now().date()
    first = today - timedelta(days=days - 1)
    start = datetime.combine(first, datetime.min.time(), tzinfo=clock.now().tzinfo)
    end = start + timedelta(days=days)
    flows = payment_queries.daily_flows(start, end)
    currencies = sorted({f.currency for f in flows}) or ["USD"]
    chosen = currency if currency in currencies else _busiest(flows, currencies)
    by_day = {f.day: f for f in flows if f.currency == chosen}
    registrations = dict(client_queries.registrations_by_day(start, end))
    rows = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        flow = by_day.get(day)
        dep, wd = (flow.deposits, flow.withdrawals) if flow else (0, 0)
        rows.append(DayFigures(day, dep, wd, dep - wd, registrations.get(day, 0)))
    return chosen, currencies, rows


def _busiest(flows: list[Any], currencies: list[str]) -> str:
    volume: dict[str, int] = {}
    for f in flows:
        volume[f.currency] = volume.get(f.currency, 0) + f.deposits + f.withdrawals
    return max(currencies, key=lambda c: (volume.get(c, 0), c == "USD"))


def queue_sizes() -> list[QueueSize]:
    """The staff work queues and their sizes."""
    from django.utils.translation import gettext as _

    from brokerdesk.partners import queries as partner_queries
    from brokerdesk.trading import reconciliation as trading_recon

    kyc = compliance_queries.kyc_state_counts()
    return [
        QueueSize(
            _("KYC reviews"),
            sum(kyc.get(s, 0) for s in KYC_REVIEW_STATES),
            "backoffice:kyc_queue",
            ("compliance_officer",),
        ),
        QueueSize(
            _("Withdrawals to approve"),
            payment_queries.count_in_status("withdrawal", "pending_approval"),
            "backoffice:withdrawals",
            ("finance",),
        ),
        QueueSize(
            _("Open AML cases"),
            compliance_queries.open_case_count(),
            "backoffice:aml_alerts",
            ("compliance_officer",),
        ),
        QueueSize(
            _("Reconciliation exceptions"),
            payment_queries.open_exception_count() + trading_recon.open_exception_count(),
            "backoffice:recon_exceptions",
            ("finance", "dealing"),
        ),
        QueueSize(
            _("Commission batches"),
            len(partner_queries.accrual_groups()),
            "backoffice:commissions",
            ("partner_manager", "finance"),
        ),
    ]


def consumer_lag() -> tuple[list[LagRow] | None, int | None]:
    """Backlog per consumer and stream, and outbox rows not yet relayed (None: unavailable)."""
    from brokerdesk.core.bus.factory import get_bus
    from brokerdesk.core.consumers import autodiscover, observe_depth
    from brokerdesk.core.relay import unrelayed_count

    try:
        unrelayed: int | None = unrelayed_count()
    except Exception:
        log.warning("dashboard: the outbox could not be counted", exc_info=True)
        unrelayed = None
    try:
        bus = get_bus()
        try:
            depths = observe_depth(bus, autodiscover().values())
        finally:
            bus.close()
    except Exception:
        log.warning("dashboard: the bus could not be asked for its depth", exc_info=True)
        return None, unrelayed
    rows = [LagRow(d.stream, d.group, d.undelivered, d.pending) for d in depths]
    return sorted(rows, key=lambda r: (-(r.undelivered + r.pending), r.stream, r.group)), unrelayed


def dashboard(*, days: int = 14, currency: str | None = None) -> Dashboard:
    """The dashboard's figures."""
    chosen, currencies, rows = daily_figures(days, currency)
    lag, unrelayed = consumer_lag()
    return Dashboard(
        currency=chosen,
        currencies=currencies,
        days=rows,
        queues=queue_sizes(),
        lag=lag,
        unrelayed=unrelayed,
        totals={
            "deposits": sum(r.deposits for r in rows),
            "withdrawals": sum(r.withdrawals for r in rows),
            "net": sum(r.net for r in rows),
            "new_clients": sum(r.new_clients for r in rows),
            "clients": client_queries.client_count(),
        },
    )


# -- withdrawal checks and risk ----------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One check that ran on a withdrawal, with its outcome (ok / warn / fail)."""

    label: str
    outcome: str
    detail: str


@dataclass(frozen=True)
class WithdrawalReview:
    """A withdrawal waiting for a second person, with what the checker needs to decide."""

    withdrawal: Any  # payments.services.WithdrawalView
    requester: str  # who asked (an e-mail address for people)
    client: Any  # clients.queries.ClientView | None
    amount: str
    checks: list[Check]
    risk: str  # low | medium | high
    steps: list[Any]


def withdrawal_review(withdrawal: Any) -> WithdrawalReview:
    """The checks that ran (policy, KYC, flags, AML, bonus forfeiture) and the risk they add up
    to."""
    from django.utils.translation import gettext as _

    cid = withdrawal.client_id
    client = client_queries.get_client(cid) if client_queries.client_exists(cid) else None
    steps = payment_queries.timeline(withdrawal.id)
    checks: list[Check] = []
    for step in steps:
        if step.to_status in ("requested", "pending_approval"):
            checks.append(
                Check(_("Payments: %(step)s") % {"step": step.to_status}, "ok", step.reason)
            )
    decision = compliance_queries.may(cid, "withdraw")
    checks.append(
        Check(_("Policy: may withdraw"), "ok" if decision.allowed else "fail", decision.reason)
    )
    kyc = compliance_queries.kyc_status(cid)
    checks.append(Check(_("KYC state"), "ok" if kyc.state == "approved" else "warn", kyc.state))
    flags = compliance_queries.open_flags(cid)
    checks.append(
        Check(
            _("Open compliance flags"),
            "fail" if flags else "ok",
            ", ".join(f"{f.kind}: {f.reason}" for f in flags) or _("None"),
        )
    )
    alerts = compliance_queries.alerts_of(cid)
    worst = _worst_severity([a.severity for a in alerts])
    checks.append(
        Check(
            _("AML alerts"),
            {"high": "fail", "medium": "warn", "low": "warn"}.get(worst, "ok"),
            ", ".join(f"{a.rule} ({a.severity})" for a in alerts[:5]) or _("None"),
        )
    )
    preview = optional_query("brokerdesk.bonuses.queries", "forfeiture_preview")
    if preview is not None:
        try:
            forfeit = preview(cid, withdrawal.currency, withdrawal.amount)
            checks.append(
                Check(
                    _("Bonus forfeiture"),
                    "warn" if forfeit.forfeited else "ok",
                    money(forfeit.forfeited, withdrawal.currency)
                    if forfeit.forfeited
                    else _("Nothing forfeited"),
                )
            )
        except Exception:
            log.warning("withdrawal review: forfeiture preview failed", exc_info=True)
    return WithdrawalReview(
        withdrawal,
        actor_names([withdrawal.requested_by])[withdrawal.requested_by],
        client,
        money(withdrawal.amount, withdrawal.currency),
        checks,
        risk_of(checks),
        steps,
    )


def _worst_severity(severities: list[str]) -> str:
    order = {"low": 1, "medium": 2, "high": 3}
    return max(severities, key=lambda s: order.get(s, 0), default="")


def risk_of(checks: list[Check]) -> str:
    """``high`` when a check failed, ``medium`` when one warned, else ``low``."""
    outcomes = {c.outcome for c in checks}
    if "fail" in outcomes:
        return "high"
    return "medium" if "warn" in outcomes else "low"


# -- client 360 ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """An optional section fed by another module: its rows, or why it is not shown."""

    available: bool
    rows: list[Any]


@dataclass
class Client360:
    """Everything the client page shows."""

    client: Any
    kyc: Any
    kyc_history: list[Any]
    flags: list[Any]
    documents: list[Any]
    balances: list[Any]
    logins: list[Any]
    deposits: list[Any]
    withdrawals: list[Any]
    ib_code: str
    alerts: list[Any]
    bonuses: Section
    tickets: Section
    timeline: list[Any]


def _optional_rows(module: str, name: str, client_id: UUID) -> Section:
    query = optional_query(module, name)
    if query is None:
        return Section(False, [])
    return Section(True, list(query(client_id)))


def client_360(client_id: UUID | str) -> Client360:
    """The client's profile, KYC, wallets, trading logins, IB, bonuses, tickets and timeline."""
    from brokerdesk.partners import queries as partner_queries

    client = client_queries.get_client(client_id)
    cid = client.id
    return Client360(
        client=client,
        kyc=compliance_queries.kyc_status(cid),
        kyc_history=compliance_queries.kyc_history(cid),
        flags=compliance_queries.open_flags(cid),
        documents=compliance_queries.documents_of(cid),
        balances=[
            b
            for b in ledger_queries.balances_of("client", str(cid))
            if b.posted or b.pending_in or b.pending_out
        ],
        logins=client_queries.logins_of(cid),
        deposits=payment_queries.deposits_of(cid, limit=10),
        withdrawals=payment_queries.withdrawals_of(cid, limit=10),
        ib_code=partner_queries.attributed_ib_code(cid),
        alerts=compliance_queries.alerts_of(cid),
        bonuses=_optional_rows("brokerdesk.bonuses.queries", "bonuses_of", cid),
        tickets=_optional_rows("brokerdesk.support.queries", "tickets_of", cid),
        timeline=client_queries.timeline(cid, limit=50),
    )
