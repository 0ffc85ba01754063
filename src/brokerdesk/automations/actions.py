"""The actions a rule may take: a fixed registry, each calling another module's services.

An action declares its parameters (typed, validated when the rule is saved), the staff roles
who may override what it did (recorded on every run), and ``run(ctx, params)``, which makes
the change through the owning module's service and returns what it changed. An action that
cannot do its work raises; the run then lands in the exceptions queue.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from django.utils.translation import gettext_lazy as _

from brokerdesk.core.errors import ValidationError
from brokerdesk.staff.roles import Role

ActionRun = Callable[["ActionContext", dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Param:
    """One parameter of an action: name, type (str, int, bool, choice) and label."""

    name: str
    type: str
    label: Any
    required: bool = True
    default: Any = None
    choices: tuple[tuple[str, Any], ...] = ()  # (code, label people read)

    @property
    def codes(self) -> tuple[str, ...]:
        """The allowed values of a choice."""
        return tuple(code for code, _label in self.choices)


@dataclass(frozen=True)
class ActionContext:
    """What an action knows: the rule, the event and who acts (``system:automations``)."""

    rule_id: UUID
    rule_name: str
    rule_version: int
    event_id: str
    event_type: str
    payload: Mapping[str, Any]
    index: int  # the action's position in the rule
    actor: str = "system:automations"

    @property
    def reason(self) -> str:
        """The reason written on the changes: which rule, which version, which event."""
        return (
            f"automation rule {self.rule_name!r} v{self.rule_version} "
            f"on {self.event_type} {self.event_id}"
        )

    @property
    def key(self) -> str:
        """An idempotency key for this action of this rule on this event."""
        return f"automation:{self.rule_id}:{self.event_id}:{self.index}"

    def require(self, name: str) -> Any:
        """A payload field the action cannot do without."""
        value = self.payload.get(name)
        if value in (None, ""):
            raise ValidationError(
                f"The {self.event_type} event carries no {name}; this action needs it.",
                code="missing_event_field",
                field=name,
            )
        return value


@dataclass(frozen=True)
class Action:
    """A registered action."""

    name: str
    label: Any
    params: tuple[Param, ...]
    override_roles: tuple[str, ...]
    run: ActionRun = field(compare=False)


ACTIONS: dict[str, Action] = {}


def action(
    name: str, label: Any, *, params: tuple[Param, ...] = (), override: tuple[Role, ...]
) -> Callable[[ActionRun], ActionRun]:
    """Register the decorated function as the action ``name``."""

    def register(func: ActionRun) -> ActionRun:
        ACTIONS[name] = Action(name, label, params, tuple(str(r) for r in override), func)
        return func

    return register


def _param_value(p: Param, raw: Any, where: str) -> Any:
    if raw in (None, "") and not p.required:
        return p.default
    if raw in (None, ""):
        raise ValidationError(f"{where} is required.", code="required", field=where)
    if p.type == "int":
        if isinstance(raw, str) and raw.strip().isdigit():
            raw = int(raw.strip())
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
            raise ValidationError(
                f"{where} must be a whole number of at least 1.", code="not_an_integer", field=where
            )
        return raw
    if p.type == "bool":
        if isinstance(raw, str):
            raw = raw.strip().lower() in ("true", "on", "yes", "1")
        return bool(raw)
    text = str(raw).strip()
    if p.type == "choice" and text not in p.codes:
        raise ValidationError(
            f"{where} must be one of {', '.join(p.codes)}.", code="unknown_choice", field=where
        )
    if len(text) > 200:
        raise ValidationError(f"{where} is too long (200 at most).", code="too_long", field=where)
    return text


def validate_actions(raw: Any) -> list[dict[str, Any]]:
    """The rule's actions checked against the registry (at least one)."""
    if not isinstance(raw, list) or not raw:
        raise ValidationError(
            "A rule needs at least one action.", code="no_actions", field="actions"
        )
    cleaned = []
    for i, item in enumerate(raw):
        where = f"actions[{i}]"
        name = str(item.get("action") or "") if isinstance(item, Mapping) else ""
        spec = ACTIONS.get(name)
        if spec is None:
            raise ValidationError(
                f"{where}.action: unknown action {name!r}; one of {', '.join(ACTIONS)}.",
                code="unknown_action",
                field=f"{where}.action",
            )
        given = item.get("params") or {}
        if not isinstance(given, Mapping):
            raise ValidationError(
                f"{where}.params must be an object.", code="invalid", field=f"{where}.params"
            )
        unknown = set(given) - {p.name for p in spec.params}
        if unknown:
            raise ValidationError(
                f"{where}.params: {', '.join(sorted(unknown))} is not a parameter of {name}.",
                code="unknown_param",
                field=f"{where}.params",
            )
        params = {
            p.name: _param_value(p, given.get(p.name), f"{where}.params.{p.name}")
            for p in spec.params
        }
        cleaned.append({"action": name, "params": params})
    return cleaned


# ---------------------------------------------------------------------------- the actions


def _client_id(ctx: ActionContext) -> str:
    return str(ctx.require("client_id"))


@action(
    "create_trading_account",
    _("Open a live trading account"),
    params=(
        Param("server", "str", _("Platform server")),
        Param("group", "str", _("Group")),
        Param("leverage", "int", _("Leverage (1:N)"), required=False, default=100),
        Param("currency", "str", _("Currency"), required=False, default="USD"),
    ),
    override=(Role.DEALING,),
)
def create_trading_account(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    """Open a live login for the client on the server (once: a client who already has a live
    account there keeps it)."""
    from brokerdesk.clients.queries import get_client
    from brokerdesk.trading import queries as trading_queries
    from brokerdesk.trading import services as trading

    client_id = _client_id(ctx)
    for existing in trading_queries.accounts_of(client_id):
        if existing.server == params["server"] and existing.is_live:
            return {
                "skipped": "the client already has a live account there",
                "login": existing.login,
            }
    client = get_client(client_id)
    account = trading.open_client_account(
        client_id,
        server=params["server"],
        group=params["group"],
        leverage=params["leverage"],
        currency=params["currency"],
        is_live=True,
        name=client.display_name,
        email=client.email,
        actor=ctx.actor,
    )
    return {
        "trading_account_id": str(account.id),
        "server": account.server,
        "login": account.login,
        "group": account.group,
    }


@action(
    "assign_group",
    _("Move the trading account to a group"),
    params=(Param("group", "str", _("Group")),),
    override=(Role.DEALING,),
)
def assign_group(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    """Move the event's login (``server``, ``login``) to the group on the platform; the
    account's row follows when the platform reports the change."""
    from brokerdesk.trading import services as trading

    server, login = str(ctx.require("server")), int(ctx.require("login"))
    port = trading.connected_port(server)
    before = port.get_user(login).group
    if before == params["group"]:
        return {"server": server, "login": login, "group": before, "unchanged": True}
    after = port.change_group(login, params["group"]).group
    return {"server": server, "login": login, "group_before": before, "group_after": after}


@action(
    "route_withdrawal",
    _("Route the withdrawal"),
    params=(
        Param(
            "lane",
            "choice",
            _("Lane"),
            choices=(
                ("auto_approve", _("Straight through: approve")),
                ("manual_review", _("Manual review")),
            ),
        ),
    ),
    override=(Role.FINANCE,),
)
def route_withdrawal(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    """Straight-through approval or manual review for the event's withdrawal."""
    from brokerdesk.payments import services as payments

    view = payments.route_withdrawal(
        str(ctx.require("payment_id")), lane=params["lane"], by=ctx.actor, reason=ctx.reason
    )
    return {"withdrawal_id": str(view.id), "lane": params["lane"], "status": view.status}


def _ticket_links(ctx: ActionContext) -> dict[str, str]:
    """Links from the ticket to what the event is about (the kinds support knows)."""
    p = ctx.payload
    links: dict[str, str] = {}
    if p.get("payment_id"):
        kind = "withdrawal" if ctx.event_type.startswith("withdrawal.") else "deposit"
        links[kind] = str(p["payment_id"])
    for field_name, kind in (
        ("bonus_id", "bonus"),
        ("challenge_id", "challenge"),
        ("accrual_id", "commission"),
        ("case_id", "case"),
        ("account_id", "account"),
    ):
        if p.get(field_name):
            links[kind] = str(p[field_name])
    return links


@action(
    "open_edd_ticket",
    _("Open an enhanced due diligence ticket"),
    params=(
        Param("subject", "str", _("Subject")),
        Param(
            "queue",
            "choice",
            _("Queue"),
            required=False,
            default="compliance",
            choices=(
                ("compliance", _("Compliance")),
                ("support", _("Support")),
                ("finance", _("Finance")),
                ("dealing", _("Dealing")),
            ),
        ),
        Param(
            "priority",
            "choice",
            _("Priority"),
            required=False,
            default="high",
            choices=(
                ("low", _("Low")),
                ("normal", _("Normal")),
                ("high", _("High")),
                ("urgent", _("Urgent")),
            ),
        ),
    ),
    override=(Role.COMPLIANCE_OFFICER,),
)
def open_edd_ticket(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    """A compliance ticket about the event's client (once per rule and event)."""
    from brokerdesk.support import services as support

    client_id = _client_id(ctx)
    ticket = support.open_ticket(
        client_id=UUID(client_id),
        category="kyc",
        subject=params["subject"],
        body=f"Enhanced due diligence requested by {ctx.reason}.",
        source="system",
        by=ctx.actor,
        queue=params["queue"],
        priority=params["priority"],
        links=_ticket_links(ctx),
        idempotency_key=ctx.key,
    )
    return {"ticket_id": str(ticket.id), "reference": ticket.reference, "queue": ticket.queue}


@action(
    "approve_commission",
    _("Approve the commission"),
    params=(
        Param("make_payable", "bool", _("Also make it payable"), required=False, default=False),
    ),
    override=(Role.PARTNER_MANAGER, Role.FINANCE),
)
def approve_commission(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    """accrued → approved (→ payable) for the event's accrual."""
    from brokerdesk.partners import accrual

    accrual_id = str(ctx.require("accrual_id"))
    accrual.approve([accrual_id], by=ctx.actor)
    state = "approved"
    if params["make_payable"]:
        accrual.make_payable([accrual_id], by=ctx.actor)
        state = "payable"
    return {"accrual_id": accrual_id, "state": state}


def _notify_kinds() -> tuple[tuple[str, Any], ...]:
    from brokerdesk.notifications.kinds import KINDS

    return tuple((k.code, k.label) for k in KINDS.values())


@action(
    "notify",
    _("Notify"),
    params=(
        Param("kind", "choice", _("Message"), choices=_notify_kinds()),
        Param(
            "recipient",
            "choice",
            _("Recipient"),
            required=False,
            default="client",
            choices=(("client", _("The client")), ("ib", _("The introducing broker"))),
        ),
    ),
    override=(Role.SUPPORT,),
)
def notify(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    """Send the client (or the event's IB) a message of ``kind`` built from the event."""
    from brokerdesk.notifications import services as notifications

    if params["recipient"] == "ib":
        from brokerdesk.partners.hierarchy import get_ib

        ib = get_ib(str(ctx.require("ib_id")))
        if ib.user_id is None:
            raise ValidationError(
                "The IB has no portal login to notify.", code="no_recipient", field="ib_id"
            )
        notifications.notify(
            user_id=ib.user_id,
            kind=params["kind"],
            context=dict(ctx.payload),
            idempotency_key=ctx.key,
        )
        return {"notified": f"user:{ib.user_id}", "kind": params["kind"]}
    client_id = _client_id(ctx)
    notifications.notify(
        client_id=UUID(client_id),
        kind=params["kind"],
        context=dict(ctx.payload),
        idempotency_key=ctx.key,
    )
    return {"notified": f"client:{client_id}", "kind": params["kind"]}
