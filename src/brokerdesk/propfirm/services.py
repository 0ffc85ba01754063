"""propfirm commands: the only functions that write the propfirm tables.

* Products: :func:`create_product`, :func:`revise_product` (writes the next version; the old
  one stops being sold, challenges keep theirs), :func:`set_product_active`.
* :func:`purchase_challenge`: ``may(client, "trade")``, then in one transaction the price
  from the client's wallet cash to the prop-fee income account (ledger key
  ``propfirm.purchase:<request_id>``), the challenge, its first phase account, the audit entry
  and ``challenge.purchased``. The same request id returns the same challenge.
* :func:`open_phase_account`: a login in the product's challenge group (trading services),
  funded with the account size by a balance operation carrying the account id in its comment
  (found again by comment when the confirmation was lost), then ``active``.
* Evaluation: :func:`record_closed_deals` (from ``trading.deal_closed``) and
  :func:`record_equity` (platform account readings) store order-free facts and run
  :func:`brokerdesk.propfirm.rules.evaluate`; a verdict is written with its audit entry and
  event in the same transaction; the platform is told afterwards (:func:`enforce`): trading
  disabled on a failed or passed login, the next phase's account opened.
* :func:`decide_manually` (staff, with a reason), :func:`expire_deadlines` (time limits).
* :func:`request_payout`: a funded account's profit split — the profit is taken off the
  platform account, the trader's share credited to the wallet from the payout expense
  account, the firm's share recorded; optionally a withdrawal of the share is requested
  through payments.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import structlog
from django.db import IntegrityError, transaction
from django.db.models import Count, Q, Sum

from brokerdesk.core import audit, clock
from brokerdesk.core.errors import (
    Conflict,
    DomainError,
    IllegalTransition,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from brokerdesk.core.events import emit
from brokerdesk.core.money import MAX_MINOR_UNITS, get_currency
from brokerdesk.ledger import services as ledger
from brokerdesk.propfirm import rules as rulebook
from brokerdesk.propfirm.events import (
    ChallengeFailed,
    ChallengeFunded,
    ChallengePassed,
    ChallengePurchased,
    ChallengeStarted,
    PayoutPaid,
)
from brokerdesk.propfirm.models import (
    Challenge,
    ChallengeStatus,
    Payout,
    PayoutState,
    PhaseAccount,
    PhaseDay,
    PhaseDeal,
    PhaseDealCorrection,
    PhaseStatus,
    Product,
)
from brokerdesk.staff.roles import Role, actor_label, require_role
from brokerdesk.trading.platform.port import (
    BalanceOp,
    ConfirmationLost,
    PlatformError,
    PlatformPort,
    transfer_comment,
)

log = structlog.get_logger(__name__)

FEE_ACCOUNT_OWNER = "propfirm:fees"  # income: challenge prices
PAYOUT_ACCOUNT_OWNER = "propfirm:payouts"  # expense: traders' profit shares
COMMENT_PREFIX = "pf:"
OPENING_STUCK_AFTER = timedelta(minutes=2)
PAYOUT_STUCK_AFTER = timedelta(minutes=2)

PHASE_TRANSITIONS: dict[str, frozenset[str]] = {
    PhaseStatus.PENDING: frozenset({PhaseStatus.OPENING, PhaseStatus.FAILED}),
    PhaseStatus.OPENING: frozenset({PhaseStatus.ACTIVE, PhaseStatus.OPENING, PhaseStatus.FAILED}),
    PhaseStatus.ACTIVE: frozenset({PhaseStatus.PASSED, PhaseStatus.FAILED}),
    PhaseStatus.PASSED: frozenset(),
    PhaseStatus.FAILED: frozenset(),
}

# --- the platform port -----------------------------------------------------------------------

PortResolver = Callable[[str], PlatformPort]
_port_resolver: PortResolver | None = None


def set_port_resolver(resolver: PortResolver | None) -> None:
    """Use ``resolver(server)`` for platform ports (tests inject a fake; None = default)."""
    global _port_resolver
    _port_resolver = resolver


def port_for(server: str) -> PlatformPort:
    """A connected port for ``server`` (trading's shared connection per process)."""
    if _port_resolver is not None:
        return _port_resolver(server)
    from brokerdesk.trading import services as trading_services

    connected = getattr(trading_services, "connected_port", None)
    if connected is not None:
        port: PlatformPort = connected(server)
        return port
    from brokerdesk.trading.config import build_adapter, platform_servers

    port = build_adapter(platform_servers()[server])
    port.connect()
    return port


# --- helpers ---------------------------------------------------------------------------------


def _require_staff(by: Any) -> str:
    """The actor's label; a person must hold the dealing role (admin holds every role)."""
    label = actor_label(by)
    if not isinstance(by, str):
        require_role(by, Role.DEALING)
    return label


def _transition(account: PhaseAccount, target: str) -> None:
    if target not in PHASE_TRANSITIONS[account.status]:
        raise IllegalTransition(
            f"A phase account cannot go from {account.status} to {target}.",
            field="status",
        )
    account.status = target


def _check_money(value: Any, field: str, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{field} must be a whole number of minor units.", field=field)
    low = 0 if allow_zero else 1
    if not low <= value <= MAX_MINOR_UNITS:
        raise ValidationError(
            f"{field} must be between {low} and {MAX_MINOR_UNITS} minor units.", field=field
        )
    return value


def _check_key(value: str, field: str = "request_id") -> str:
    value = (value or "").strip()
    if not value or len(value) > 150:
        raise ValidationError(f"{field} must be 1 to 150 characters.", field=field)
    return value


def _phase_rules(product: Product) -> list[rulebook.PhaseRules]:
    return rulebook.parse_phases(product.phases)


def _msc_day(time_msc: int) -> date:
    """The server day of a platform time (platform times are server time, labelled UTC)."""
    return datetime.fromtimestamp(time_msc / 1000, tz=UTC).date()


def now_msc() -> int:
    """The clock's time in milliseconds."""
    return int(clock.now().timestamp() * 1000)


def fee_account(currency: str) -> Any:
    """The income account challenge prices are paid into."""
    return ledger.open_account("system", FEE_ACCOUNT_OWNER, currency, "income")


def payout_account(currency: str) -> Any:
    """The expense account traders' profit shares are paid from."""
    return ledger.open_account("system", PAYOUT_ACCOUNT_OWNER, currency, "expense")


# --- products --------------------------------------------------------------------------------


def _validated_product(data: Mapping[str, Any]) -> dict[str, Any]:
    code = str(data.get("code", "")).strip().lower()
    if not code or len(code) > 64 or not all(c.isalnum() or c in "-_" for c in code):
        raise ValidationError(
            "code must be 1 to 64 letters, digits, hyphens or underscores.", field="code"
        )
    name = str(data.get("name", "")).strip()
    if not name or len(name) > 200:
        raise ValidationError("name must be 1 to 200 characters.", field="name")
    split = data.get("profit_split_bps", 8000)
    if isinstance(split, bool) or not isinstance(split, int) or not 0 <= split <= rulebook.BPS:
        raise ValidationError(
            "profit_split_bps must be a whole number from 0 to 10000.", field="profit_split_bps"
        )
    leverage = data.get("leverage", 100)
    if isinstance(leverage, bool) or not isinstance(leverage, int) or not 1 <= leverage <= 1000:
        raise ValidationError("leverage must be between 1 and 1000.", field="leverage")
    phases = rulebook.parse_phases(data.get("phases") or [])
    group = str(data.get("platform_group") or "demo\\standard").strip()
    server = str(data.get("server") or "sim").strip()
    if not group or not server:
        raise ValidationError("server and platform_group are required.", field="platform_group")
    return {
        "code": code,
        "name": name,
        "price": _check_money(data.get("price"), "price"),
        "currency": get_currency(str(data.get("currency", ""))).code,
        "account_size": _check_money(data.get("account_size"), "account_size"),
        "profit_split_bps": split,
        "server": server,
        "platform_group": group,
        "leverage": leverage,
        "phases": [p.as_dict() for p in phases],
    }


def create_product(*, by: Any, **fields: Any) -> Product:
    """Create version 1 of a product (dealing role); the code must be new."""
    actor = _require_staff(by)
    values = _validated_product(fields)
    if Product.objects.filter(code=values["code"]).exists():
        raise Conflict(
            f"A product with the code {values['code']!r} exists; revise it instead.",
            code="product_exists",
            field="code",
        )
    try:
        with transaction.atomic():
            product = Product.objects.create(
                **values, version=1, created_by=actor, created_at=clock.now()
            )
            audit.record(
                actor=actor,
                action="propfirm.product_created",
                object_type="propfirm_product",
                object_id=product.code,
                after=values,
            )
    except IntegrityError as exc:
        raise Conflict("That product code was just taken.", code="product_exists",
                       field="code") from exc  # fmt: skip
    return product


def revise_product(product_id: UUID | str, *, by: Any, **changes: Any) -> Product:
    """Write the next version of a product with ``changes``; the old version stops selling.

    Challenges already bought keep the version (and rules) they were bought under.
    """
    actor = _require_staff(by)
    with transaction.atomic():
        current = Product.objects.select_for_update().filter(pk=product_id).first()
        if current is None:
            raise NotFound("No such product.", field="product_id")
        latest = Product.objects.filter(code=current.code).order_by("-version").first()
        assert latest is not None
        if latest.pk != current.pk:
            raise Conflict(
                "Only the newest version of a product can be revised.",
                code="stale_version",
                field="product_id",
            )
        base = {
            "code": current.code,
            "name": current.name,
            "price": current.price,
            "currency": current.currency,
            "account_size": current.account_size,
            "profit_split_bps": current.profit_split_bps,
            "server": current.server,
            "platform_group": current.platform_group,
            "leverage": current.leverage,
            "phases": current.phases,
        }
        changes.pop("code", None)
        values = _validated_product({**base, **changes})
        product = Product.objects.create(
            **values,
            version=current.version + 1,
            active=current.active,
            created_by=actor,
            created_at=clock.now(),
        )
        Product.objects.filter(pk=current.pk).update(active=False)
        audit.record(
            actor=actor,
            action="propfirm.product_revised",
            object_type="propfirm_product",
            object_id=product.code,
            before=base,
            after={**values, "version": product.version},
        )
    return product


def set_product_active(product_id: UUID | str, active: bool, *, by: Any) -> Product:
    """Start or stop selling a product version."""
    actor = _require_staff(by)
    with transaction.atomic():
        product = Product.objects.select_for_update().filter(pk=product_id).first()
        if product is None:
            raise NotFound("No such product.", field="product_id")
        if product.active != active:
            before = product.active
            product.active = active
            product.save(update_fields=["active"])
            audit.record(
                actor=actor,
                action="propfirm.product_activated" if active else "propfirm.product_withdrawn",
                object_type="propfirm_product",
                object_id=product.code,
                before={"active": before, "version": product.version},
                after={"active": active, "version": product.version},
            )
    return product


# --- purchase --------------------------------------------------------------------------------


def purchase_challenge(
    client_id: UUID | str, product_id: UUID | str, *, request_id: str, by: Any
) -> Challenge:
    """Buy a challenge from the wallet's cash; the same ``request_id`` is the same purchase."""
    from brokerdesk.compliance.queries import may

    request_id = _check_key(request_id)
    actor = actor_label(by)
    existing = Challenge.objects.filter(request_key=request_id).first()
    if existing is not None:
        return _replayed(existing, client_id, product_id)
    product = Product.objects.filter(pk=product_id).first()
    if product is None:
        raise NotFound("No such product.", code="product_not_found", field="product_id")
    if not product.active:
        raise Conflict(
            "This product is no longer sold.", code="product_inactive", field="product_id"
        )
    decision = may(client_id, "trade")
    if not decision.allowed:
        raise PermissionDenied(decision.reason, code=decision.reason_code, field="client_id")
    first = _phase_rules(product)[0]
    try:
        with transaction.atomic():
            return _purchase(str(client_id), product, first, request_id, actor)
    except IntegrityError:
        existing = Challenge.objects.filter(request_key=request_id).first()
        if existing is None:
            raise
        return _replayed(existing, client_id, product_id)


def _replayed(challenge: Challenge, client_id: UUID | str, product_id: UUID | str) -> Challenge:
    if challenge.client_id != str(client_id) or str(challenge.product_id) != str(product_id):
        raise Conflict(
            "This request id was used for another purchase.",
            code="idempotency_conflict",
            field="request_id",
        )
    return challenge


def _purchase(
    client_id: str, product: Product, first: rulebook.PhaseRules, request_id: str, actor: str
) -> Challenge:
    payment = ledger.transfer(
        f"propfirm.purchase:{request_id}",
        debit_account=ledger.wallet_account(client_id, product.currency).id,
        credit_account=fee_account(product.currency).id,
        amount=product.price,
        currency=product.currency,
        kind="prop_challenge_fee",
        metadata={"product": product.code, "version": product.version},
        actor=actor,
    )
    now = clock.now()
    challenge = Challenge.objects.create(
        request_key=request_id,
        client_id=client_id,
        product=product,
        price=product.price,
        currency=product.currency,
        payment_transfer_id=payment.transfer_id,
        created_at=now,
        updated_at=now,
    )
    _new_phase_account(challenge, 0, first, product)
    figures = {
        "price": product.price,
        "currency": product.currency,
        "account_size": product.account_size,
        "product": product.code,
        "version": product.version,
    }
    emit(ChallengePurchased(str(challenge.id), client_id, first.name, "", figures))
    audit.record(
        actor=actor,
        action="propfirm.challenge_purchased",
        object_type="propfirm_challenge",
        object_id=str(challenge.id),
        after={**figures, "client_id": client_id, "transfer_id": str(payment.transfer_id)},
    )
    return challenge


def _new_phase_account(
    challenge: Challenge, index: int, phase: rulebook.PhaseRules, product: Product
) -> PhaseAccount:
    now = clock.now()
    return PhaseAccount.objects.create(
        challenge=challenge,
        phase_index=index,
        phase_name=phase.name,
        funded=phase.funded,
        server=product.server,
        account_size=product.account_size,
        created_at=now,
        updated_at=now,
    )


# --- platform accounts -----------------------------------------------------------------------


def open_phase_account(account_id: UUID | str, *, port: PlatformPort | None = None) -> PhaseAccount:
    """Open and fund the platform login of a pending phase account (safe to call again)."""
    with transaction.atomic():
        account = PhaseAccount.objects.select_for_update().filter(pk=account_id).first()
        if account is None:
            raise NotFound("No such phase account.", field="account_id")
        if account.status not in (PhaseStatus.PENDING, PhaseStatus.OPENING):
            return account
        stuck = account.updated_at < clock.now() - OPENING_STUCK_AFTER
        if account.status == PhaseStatus.OPENING and not stuck:
            return account  # another process is opening it right now
        _transition(account, PhaseStatus.OPENING)
        account.updated_at = clock.now()
        account.save(update_fields=["status", "updated_at"])
    challenge = Challenge.objects.select_related("product").get(pk=account.challenge_id)
    product = challenge.product
    port = port or port_for(account.server)
    if account.login is None:
        _create_login(account, challenge, product, port)
    _fund_login(account, port)
    return _activate(account, challenge)


def _create_login(
    account: PhaseAccount, challenge: Challenge, product: Product, port: PlatformPort
) -> None:
    from brokerdesk.trading.services import open_trading_account

    trading_account = open_trading_account(
        port,
        client_id=challenge.client_id,
        name=f"{product.name} — {account.phase_name}"[:64],
        group=product.platform_group,
        leverage=product.leverage,
        currency=product.currency,
        is_live=False,
        actor="system:propfirm",
    )
    with transaction.atomic():
        PhaseAccount.objects.filter(pk=account.pk).update(
            login=trading_account.login, server=port.server_name, updated_at=clock.now()
        )
    account.login = trading_account.login
    account.server = port.server_name


def _fund_login(account: PhaseAccount, port: PlatformPort) -> None:
    assert account.login is not None
    comment = transfer_comment(account.id, prefix=COMMENT_PREFIX)
    since = int((account.created_at - timedelta(days=1)).timestamp() * 1000)
    if port.find_balance_deal(account.login, comment, since) is not None:
        return
    try:
        port.balance_operation(account.login, BalanceOp.DEPOSIT, account.account_size, comment)
    except ConfirmationLost:
        if port.find_balance_deal(account.login, comment, since) is None:
            raise


def _activate(account: PhaseAccount, challenge: Challenge) -> PhaseAccount:
    rules = _phase_rules(challenge.product)[account.phase_index]
    with transaction.atomic():
        account = PhaseAccount.objects.select_for_update().get(pk=account.pk)
        if account.status != PhaseStatus.OPENING:
            return account
        now = clock.now()
        _transition(account, PhaseStatus.ACTIVE)
        account.started_at = now
        account.deadline = (
            now + timedelta(days=rules.time_limit_days) if rules.time_limit_days else None
        )
        account.last_equity = account.last_balance = account.account_size
        account.updated_at = now
        account.save()
        figures = {"login": account.login, "account_size": account.account_size}
        emit(ChallengeStarted(str(challenge.id), challenge.client_id, account.phase_name, "",
                              {**figures, "server": account.server}))  # fmt: skip
        audit.record(
            actor="system:propfirm",
            action="propfirm.phase_started",
            object_type="propfirm_challenge",
            object_id=str(challenge.id),
            after={**figures, "phase": account.phase_name, "server": account.server},
        )
    return account


def open_pending_accounts(limit: int = 50) -> int:
    """Open the platform accounts still pending (new purchases, passed phases); count them."""
    cutoff = clock.now() - OPENING_STUCK_AFTER
    waiting = Q(status=PhaseStatus.PENDING) | Q(status=PhaseStatus.OPENING, updated_at__lt=cutoff)
    ids = list(
        PhaseAccount.objects.filter(waiting)
        .order_by("created_at")
        .values_list("id", flat=True)[:limit]
    )
    opened = 0
    for account_id in ids:
        try:
            opened += open_phase_account(account_id).status == PhaseStatus.ACTIVE
        except (PlatformError, DomainError):
            log.warning("propfirm_open_failed", account_id=str(account_id), exc_info=True)
    return opened


# --- evaluation ------------------------------------------------------------------------------


def _accounts_by_login(keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], PhaseAccount]:
    wanted = set(keys)
    by_server: dict[str, set[int]] = defaultdict(set)
    for server, login in wanted:
        by_server[server].add(login)
    found: dict[tuple[str, int], PhaseAccount] = {}
    for server, logins in by_server.items():
        rows = PhaseAccount.objects.filter(
            server=server,
            login__in=logins,
            status__in=(PhaseStatus.ACTIVE, PhaseStatus.OPENING),
        ).order_by("pk")
        for row in rows:
            assert row.login is not None
            found[(row.server, row.login)] = row
    return found


def deal_pnl(payload: Mapping[str, Any]) -> int:
    """The realised money of a closing deal: profit + commission + swap + fee."""
    return sum(int(payload.get(k, 0)) for k in ("profit", "commission", "storage", "fee"))


def record_closed_deals(deals: Sequence[Mapping[str, Any]]) -> int:
    """Store closing deals of challenge logins once each, then evaluate those accounts.

    ``deals`` are ``trading.deal_closed`` payloads (server, login, deal, profit, commission,
    storage, fee, time_msc). Other logins' deals are ignored. Returns the deals stored anew.
    """
    accounts = _accounts_by_login((str(d["server"]), int(d["login"])) for d in deals)
    if not accounts:
        return 0
    per_account: dict[UUID, list[Mapping[str, Any]]] = defaultdict(list)
    for d in deals:
        account = accounts.get((str(d["server"]), int(d["login"])))
        if account is not None:
            per_account[account.pk].append(d)
    stored = 0
    with transaction.atomic():
        for account_id in sorted(per_account):
            account = PhaseAccount.objects.select_for_update().get(pk=account_id)
            stored += _store_deals(account, per_account[account_id])
            _evaluate_locked(account)
    return stored


def _store_deals(account: PhaseAccount, deals: list[Mapping[str, Any]]) -> int:
    tickets = {int(d["deal"]) for d in deals}
    known = set(
        PhaseDeal.objects.filter(account=account, deal__in=tickets).values_list("deal", flat=True)
    )
    deadline_msc = int(account.deadline.timestamp() * 1000) if account.deadline else None
    rows = {}
    for d in deals:
        ticket = int(d["deal"])
        if deadline_msc is not None and int(d["time_msc"]) > deadline_msc:
            continue  # closed after the time limit: it does not count
        if ticket not in known and ticket not in rows:
            time_msc = int(d["time_msc"])
            rows[ticket] = PhaseDeal(
                account=account, deal=ticket, time_msc=time_msc, day=_msc_day(time_msc),
                pnl=deal_pnl(d),
            )  # fmt: skip
    if not rows:
        return 0
    PhaseDeal.objects.bulk_create(rows.values(), ignore_conflicts=True)
    days = {row.day for row in rows.values()}
    totals = (
        PhaseDeal.objects.filter(account=account, day__in=days, deleted=False)
        .values("day")
        .annotate(pnl=Sum("pnl"), trades=Count("deal"))
    )
    for total in totals:
        day, _ = PhaseDay.objects.get_or_create(account=account, day=total["day"])
        day.pnl, day.trades = int(total["pnl"]), int(total["trades"])
        day.save(update_fields=["pnl", "trades"])
    return len(rows)


def record_equity(server: str, login: int, *, equity: int, balance: int, at_msc: int) -> bool:
    """Store an equity reading of a challenge login (a day's lowest and highest), then
    evaluate it. Returns False when the login is not an active challenge account."""
    accounts = _accounts_by_login([(server, int(login))])
    account = accounts.get((server, int(login)))
    if account is None:
        return False
    with transaction.atomic():
        account = PhaseAccount.objects.select_for_update().get(pk=account.pk)
        _store_reading(account, int(equity), int(balance), int(at_msc))
        _evaluate_locked(account)
    return True


def _store_reading(account: PhaseAccount, equity: int, balance: int, at_msc: int) -> None:
    day, _ = PhaseDay.objects.get_or_create(account=account, day=_msc_day(at_msc))
    changed = []
    if day.min_equity is None or (equity, at_msc) < (day.min_equity, day.min_equity_msc):
        day.min_equity, day.min_equity_msc = equity, at_msc
        changed += ["min_equity", "min_equity_msc"]
    if day.max_equity is None or (equity, -at_msc) > (day.max_equity, -day.max_equity_msc):
        day.max_equity, day.max_equity_msc = equity, at_msc
        changed += ["max_equity", "max_equity_msc"]
    if changed:
        day.save(update_fields=changed)
    if at_msc > account.last_reading_msc:
        PhaseAccount.objects.filter(pk=account.pk).update(
            last_equity=equity, last_balance=balance, last_reading_msc=at_msc
        )
        account.last_equity, account.last_balance = equity, balance
        account.last_reading_msc = at_msc


def day_facts(account: PhaseAccount) -> list[rulebook.DayFacts]:
    """The account's day rows as the evaluation reads them."""
    return [
        rulebook.DayFacts(
            day=d.day,
            pnl=d.pnl,
            trades=d.trades,
            min_equity=d.min_equity,
            min_equity_msc=d.min_equity_msc,
            max_equity=d.max_equity,
            max_equity_msc=d.max_equity_msc,
            paid_out=d.paid_out,
        )
        for d in PhaseDay.objects.filter(account=account).order_by("day")
    ]


def _evaluate_locked(account: PhaseAccount) -> rulebook.Verdict:
    """Evaluate a locked, active account and write the verdict (inside a transaction)."""
    if account.status != PhaseStatus.ACTIVE:
        return rulebook.Verdict("none")
    challenge = Challenge.objects.select_related("product").get(pk=account.challenge_id)
    phase = _phase_rules(challenge.product)[account.phase_index]
    verdict = rulebook.evaluate(
        phase, account.account_size, day_facts(account), now=clock.now(),
        deadline=account.deadline,
    )  # fmt: skip
    if verdict.outcome == "breach":
        _fail(account, challenge, verdict.rule, verdict.figures, "system:propfirm", "")
    elif verdict.outcome == "pass":
        _pass(account, challenge, verdict.rule, verdict.figures, "system:propfirm", "")
    return verdict


def evaluate_account(account_id: UUID | str) -> rulebook.Verdict:
    """Evaluate one account now (after a reading, at its deadline, on demand)."""
    with transaction.atomic():
        account = PhaseAccount.objects.select_for_update().filter(pk=account_id).first()
        if account is None:
            raise NotFound("No such phase account.", field="account_id")
        return _evaluate_locked(account)


def _close_phase(
    account: PhaseAccount, status: str, rule: str, figures: dict[str, Any], actor: str
) -> None:
    _transition(account, status)
    now = clock.now()
    account.rule = rule
    account.figures = figures
    account.decided_by = actor
    account.ended_at = now
    account.platform_pending = True
    account.updated_at = now
    account.save()
    transaction.on_commit(lambda: enforce_quietly(account.pk))


def _fail(
    account: PhaseAccount,
    challenge: Challenge,
    rule: str,
    figures: dict[str, Any],
    actor: str,
    reason: str,
) -> None:
    _close_phase(account, PhaseStatus.FAILED, rule, figures, actor)
    challenge.status = ChallengeStatus.FAILED
    challenge.updated_at = clock.now()
    challenge.save(update_fields=["status", "updated_at"])
    emit(ChallengeFailed(str(challenge.id), challenge.client_id, account.phase_name, rule,
                         figures))  # fmt: skip
    audit.record(
        actor=actor,
        action="propfirm.phase_failed",
        object_type="propfirm_challenge",
        object_id=str(challenge.id),
        reason=reason or rule,
        before={"status": PhaseStatus.ACTIVE, "phase": account.phase_name},
        after={"status": PhaseStatus.FAILED, "rule": rule, "figures": figures},
    )


def _pass(
    account: PhaseAccount,
    challenge: Challenge,
    rule: str,
    figures: dict[str, Any],
    actor: str,
    reason: str,
) -> None:
    phases = _phase_rules(challenge.product)
    _close_phase(account, PhaseStatus.PASSED, rule, figures, actor)
    following = account.phase_index + 1
    emit(ChallengePassed(str(challenge.id), challenge.client_id, account.phase_name, rule,
                         figures))  # fmt: skip
    if following < len(phases):
        _new_phase_account(challenge, following, phases[following], challenge.product)
        challenge.phase_index = following
        if phases[following].funded:
            challenge.status = ChallengeStatus.FUNDED
            emit(ChallengeFunded(str(challenge.id), challenge.client_id, phases[following].name,
                                 rule, figures))  # fmt: skip
        challenge.updated_at = clock.now()
        challenge.save(update_fields=["phase_index", "status", "updated_at"])
    audit.record(
        actor=actor,
        action="propfirm.phase_passed",
        object_type="propfirm_challenge",
        object_id=str(challenge.id),
        reason=reason or rule,
        before={"status": PhaseStatus.ACTIVE, "phase": account.phase_name},
        after={"status": PhaseStatus.PASSED, "rule": rule, "figures": figures,
               "next_phase": phases[following].name if following < len(phases) else None},
    )  # fmt: skip


def decide_manually(account_id: UUID | str, outcome: str, *, reason: str, by: Any) -> PhaseAccount:
    """Staff (dealing) fail or pass an active phase by hand; the reason is mandatory."""
    actor = _require_staff(by)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("A reason is required.", field="reason")
    if outcome not in ("fail", "pass"):
        raise ValidationError("outcome must be fail or pass.", field="outcome")
    with transaction.atomic():
        account = PhaseAccount.objects.select_for_update().filter(pk=account_id).first()
        if account is None:
            raise NotFound("No such phase account.", field="account_id")
        if account.status != PhaseStatus.ACTIVE:
            raise IllegalTransition(
                f"Only an active phase can be decided; this one is {account.status}.",
                field="account_id",
            )
        challenge = Challenge.objects.select_related("product").get(pk=account.challenge_id)
        if outcome == "pass" and account.funded:
            raise IllegalTransition("A funded account has no phase to pass.", field="outcome")
        figures = {"reason": reason, "equity": account.last_equity, "size": account.account_size}
        if outcome == "fail":
            _fail(account, challenge, "manual", figures, actor, reason)
        else:
            _pass(account, challenge, "manual", figures, actor, reason)
    return account


def expire_deadlines() -> int:
    """Evaluate the active accounts whose deadline has passed (they pass or fail now)."""
    ids = list(
        PhaseAccount.objects.filter(
            status=PhaseStatus.ACTIVE, deadline__isnull=False, deadline__lte=clock.now()
        ).values_list("id", flat=True)[:500]
    )
    return sum(evaluate_account(i).outcome != "none" for i in ids)


# --- telling the platform --------------------------------------------------------------------


def enforce(account_id: UUID | str, *, port: PlatformPort | None = None) -> bool:
    """Disable trading on a decided login, then open the next phase's account if any."""
    account = PhaseAccount.objects.filter(pk=account_id).first()
    if account is None or not account.platform_pending:
        return False
    if account.login is not None:
        port = port or port_for(account.server)
        port.set_trading_enabled(account.login, False)
    with transaction.atomic():
        PhaseAccount.objects.filter(pk=account.pk).update(
            platform_pending=False, updated_at=clock.now()
        )
        audit.record(
            actor="system:propfirm",
            action="propfirm.trading_disabled",
            object_type="propfirm_challenge",
            object_id=str(account.challenge_id),
            after={"login": account.login, "server": account.server, "rule": account.rule},
        )
    following = PhaseAccount.objects.filter(
        challenge_id=account.challenge_id,
        phase_index=account.phase_index + 1,
        status=PhaseStatus.PENDING,
    ).first()
    if following is not None and account.status == PhaseStatus.PASSED:
        open_phase_account(following.pk, port=port if following.server == account.server else None)
    return True


def enforce_quietly(account_id: UUID | str) -> None:
    """:func:`enforce` after a commit; a failure is logged and retried by the periodic job."""
    try:
        enforce(account_id)
    except Exception:  # the platform may be unreachable; propfirm.enforce retries
        log.warning("propfirm_enforce_failed", account_id=str(account_id), exc_info=True)


def enforce_pending(limit: int = 200) -> int:
    """Retry platform enforcement of every decision the platform has not heard about."""
    ids = list(
        PhaseAccount.objects.filter(platform_pending=True)
        .order_by("updated_at")
        .values_list("id", flat=True)[:limit]
    )
    done = 0
    for account_id in ids:
        try:
            done += enforce(account_id)
        except (PlatformError, DomainError):
            log.warning("propfirm_enforce_failed", account_id=str(account_id), exc_info=True)
    return done


def poll_equity(limit: int = 500) -> int:
    """Read the platform's equity of the active accounts (stalest first) and evaluate them."""
    from brokerdesk.trading.services import refresh_account_state

    rows = list(
        PhaseAccount.objects.filter(status=PhaseStatus.ACTIVE, login__isnull=False)
        .order_by("last_reading_msc")
        .values_list("server", "login")[:limit]
    )
    read = 0
    for server, login in rows:
        if login is None:
            continue
        try:
            at = now_msc()
            state = refresh_account_state(port_for(server), login)
        except (PlatformError, DomainError):
            log.warning("propfirm_poll_failed", server=server, login=login, exc_info=True)
            continue
        read += record_equity(server, login, equity=state.equity, balance=state.balance,
                              at_msc=at)  # fmt: skip
    return read


# --- dealer corrections ----------------------------------------------------------------------

#: Outcomes of a correction (``PhaseDealCorrection.outcome``).
CORRECTION_OUTCOMES = (
    "stale",  # not stored: never here
    "evaluated",  # active phase, re-evaluated, still running
    "failed_on_correction",  # active phase failed on the corrected figures (review)
    "passed_on_correction",  # active phase passed on the corrected figures
    "decision_confirmed",  # decided phase: the corrected figures lead to the same outcome
    "breach_not_confirmed",  # failed phase: the corrected figures show no breach (review)
    "pass_not_confirmed",  # passed phase: the corrected figures do not pass (review)
    "recorded",  # decided by staff, or still opening: recorded only
)


def _closing_pnl(state: Mapping[str, Any] | None) -> int | None:
    """The realised P/L of a deal state, or None when it is not a closing trade deal."""
    from brokerdesk.trading.platform.port import DealAction, DealEntry

    if not state:
        return None
    closing = (DealEntry.ENTRY_OUT, DealEntry.ENTRY_INOUT, DealEntry.ENTRY_OUT_BY)
    trade = (DealAction.DEAL_BUY, DealAction.DEAL_SELL)
    if int(state.get("entry", -1)) not in closing or int(state.get("action", -1)) not in trade:
        return None
    return deal_pnl(state)


def record_deal_corrections(corrections: Sequence[Mapping[str, Any]]) -> int:
    """Apply ``trading.deal_corrected`` payloads of challenge logins, in order; returns how
    many changed something. Other logins' corrections are ignored."""
    return sum(apply_deal_correction(c) for c in corrections)


def _day_totals(account: PhaseAccount, day: date) -> None:
    """Recompute one day's realised P/L and trade count from its counted deal rows."""
    total = PhaseDeal.objects.filter(account=account, day=day, deleted=False).aggregate(
        pnl=Sum("pnl"), trades=Count("deal")
    )
    row, _ = PhaseDay.objects.get_or_create(account=account, day=day)
    row.pnl, row.trades = int(total["pnl"] or 0), int(total["trades"] or 0)
    row.save(update_fields=["pnl", "trades"])


def _shift_readings(account: PhaseAccount, since_msc: int, until_msc: int, delta: int) -> None:
    """Equity readings taken after the deal closed and before it was corrected did not include
    the correction: move them by ``delta`` as if the deal had been right from the start.

    Exact for whole days in between; on the deal's and the correction's own day only the
    stored lowest and highest readings are moved when they fall in the interval.
    """
    if not delta:
        return
    for d in PhaseDay.objects.filter(account=account, day__gte=_msc_day(since_msc)):
        changed = []
        if d.min_equity is not None and since_msc <= d.min_equity_msc < until_msc:
            d.min_equity += delta
            changed.append("min_equity")
        if d.max_equity is not None and since_msc <= d.max_equity_msc < until_msc:
            d.max_equity += delta
            changed.append("max_equity")
        if changed:
            d.save(update_fields=changed)
    if since_msc <= account.last_reading_msc < until_msc and account.last_equity is not None:
        account.last_equity += delta
        if account.last_balance is not None:
            account.last_balance += delta
        PhaseAccount.objects.filter(pk=account.pk).update(
            last_equity=account.last_equity, last_balance=account.last_balance
        )


def _judge_correction(account: PhaseAccount) -> tuple[str, bool, rulebook.Verdict]:
    """Re-evaluate a locked account on its corrected facts: (outcome, review, verdict).

    An active phase is evaluated as on any new fact (a breach fails it, a target met passes
    it). A decided phase is never reopened or revoked: the corrected verdict at the time of
    the decision is compared with it and a difference is flagged for staff.
    """
    if account.status == PhaseStatus.ACTIVE:
        verdict = _evaluate_locked(account)
        if verdict.outcome == "breach":
            return "failed_on_correction", True, verdict
        if verdict.outcome == "pass":
            return "passed_on_correction", False, verdict
        return "evaluated", False, verdict
    decided = account.status in (PhaseStatus.FAILED, PhaseStatus.PASSED)
    if not decided or account.rule == "manual":
        return "recorded", False, rulebook.Verdict("none")
    challenge = Challenge.objects.select_related("product").get(pk=account.challenge_id)
    phase = _phase_rules(challenge.product)[account.phase_index]
    verdict = rulebook.evaluate(
        phase, account.account_size, day_facts(account), now=account.ended_at or clock.now(),
        deadline=account.deadline,
    )  # fmt: skip
    if account.status == PhaseStatus.FAILED and verdict.outcome != "breach":
        return "breach_not_confirmed", True, verdict
    if account.status == PhaseStatus.PASSED and verdict.outcome != "pass":
        return "pass_not_confirmed", True, verdict
    return "decision_confirmed", False, verdict


def apply_deal_correction(payload: Mapping[str, Any]) -> int:
    """Apply one ``trading.deal_corrected`` to a challenge login's deal; 1 when it changed
    something. Idempotent per (server, deal, version_msc); newest version wins, a delete is
    final. A deal never stored is stored in its corrected state when the phase is still
    running (so its late ``deal_closed`` is a duplicate), else ignored."""
    server, login = str(payload["server"]), int(payload["login"])
    ticket, version = int(payload["deal"]), int(payload["version_msc"])
    change = str(payload.get("change") or "update")
    pnl_after = None if change == "delete" else _closing_pnl(payload.get("after"))
    account_id = (
        PhaseAccount.objects.filter(server=server, login=login).values_list("pk", flat=True).first()
    )
    if account_id is None:
        return 0
    with transaction.atomic():
        account = PhaseAccount.objects.select_for_update().get(pk=account_id)
        done = PhaseDealCorrection.objects.filter(account=account, deal=ticket)
        if done.filter(Q(version_msc__gte=version) | Q(change="delete")).exists():
            return 0  # a repeat, an older version, or after a delete
        row = PhaseDeal.objects.filter(account=account, deal=ticket).first()
        if row is not None and row.version_msc >= version:
            return 0
        if row is None:
            state = payload.get("after") or payload.get("before") or {}
            time_msc = int(state.get("time_msc") or 0)
            deadline_msc = int(account.deadline.timestamp() * 1000) if account.deadline else None
            running = account.status in (PhaseStatus.ACTIVE, PhaseStatus.OPENING)
            if not running or not time_msc or (deadline_msc and time_msc > deadline_msc):
                return 0  # never counted and never will be
            if pnl_after is None and _closing_pnl(payload.get("before")) is None:
                return 0  # not a closing trade deal, before or after
            row = PhaseDeal(account=account, deal=ticket, time_msc=time_msc,
                            day=_msc_day(time_msc), pnl=0, deleted=True)  # fmt: skip
        pnl_before = None if row.deleted else row.pnl
        row.pnl, row.deleted, row.version_msc = pnl_after or 0, pnl_after is None, version
        row.save()
        _day_totals(account, row.day)
        delta = (pnl_after or 0) - (pnl_before or 0)
        _shift_readings(account, row.time_msc, version, delta)
        status = account.status
        outcome, review, verdict = _judge_correction(account)
        entry = PhaseDealCorrection.objects.create(
            account=account, deal=ticket, version_msc=version, change=change,
            pnl_before=pnl_before, pnl_after=pnl_after, status=status, outcome=outcome,
            verdict={"outcome": verdict.outcome, "rule": verdict.rule,
                     "figures": verdict.figures, "decided_rule": account.rule},
            review=review, at=clock.now(),
        )  # fmt: skip
        audit.record(
            actor="system:propfirm",
            action="propfirm.deal_corrected",
            object_type="propfirm_challenge",
            object_id=str(account.challenge_id),
            reason=outcome,
            before={"deal": ticket, "pnl": pnl_before, "status": status},
            after={"deal": ticket, "pnl": pnl_after, "version_msc": version, "change": change,
                   "status": account.status, "review": review, "correction": str(entry.pk)},
        )  # fmt: skip
    return 1


def resolve_correction_review(
    correction_id: int | str, *, note: str, by: Any
) -> PhaseDealCorrection:
    """Staff (dealing) close a flagged correction with a note (what they did about it)."""
    actor = _require_staff(by)
    note = (note or "").strip()
    if not note:
        raise ValidationError("A note is required.", field="note")
    with transaction.atomic():
        entry = PhaseDealCorrection.objects.select_for_update().filter(pk=correction_id).first()
        if entry is None:
            raise NotFound("No such correction.", field="correction_id")
        if not entry.review or entry.reviewed_at is not None:
            raise IllegalTransition("This correction is not waiting for review.",
                                    field="correction_id")  # fmt: skip
        entry.reviewed_by, entry.reviewed_at, entry.review_note = actor, clock.now(), note
        entry.save(update_fields=["reviewed_by", "reviewed_at", "review_note"])
        audit.record(
            actor=actor,
            action="propfirm.correction_reviewed",
            object_type="propfirm_challenge",
            object_id=str(entry.account.challenge_id),
            reason=note,
            after={"correction": entry.pk, "outcome": entry.outcome},
        )
    return entry


# --- payouts ---------------------------------------------------------------------------------


def split_profit(profit: int, split_bps: int) -> tuple[int, int]:
    """(trader's share, firm's share): the trader's rounded down to the minor unit, the firm
    takes the rest, so the two always add up to the profit."""
    trader = profit * split_bps // rulebook.BPS
    return trader, profit - trader


def request_payout(
    account_id: UUID | str,
    *,
    client_id: UUID | str,
    request_id: str,
    by: Any,
    method_id: UUID | str | None = None,
    port: PlatformPort | None = None,
) -> Payout:
    """Split a funded account's profit: take it off the platform account, credit the trader's
    share to the wallet, record the firm's; with ``method_id`` also ask to withdraw the share.

    The same ``request_id`` continues or returns the same payout.
    """
    request_id = _check_key(request_id)
    actor = actor_label(by)
    account = (
        PhaseAccount.objects.select_related("challenge__product").filter(pk=account_id).first()
    )
    if account is None or account.challenge.client_id != str(client_id):
        raise NotFound("No such funded account.", code="account_not_found", field="account_id")
    existing = Payout.objects.filter(request_key=request_id).first()
    if existing is not None:
        if existing.account_id != account.pk:
            raise Conflict("This request id was used for another payout.",
                           code="idempotency_conflict", field="request_id")  # fmt: skip
        return _finish_payout(existing, port=port)
    if not account.funded or account.status != PhaseStatus.ACTIVE or account.login is None:
        raise Conflict(
            "Payouts are made from an active funded account.",
            code="not_funded",
            field="account_id",
        )
    port = port or port_for(account.server)
    state = port.account_state(account.login)
    profit = min(state.balance, state.equity) - account.account_size
    if profit <= 0:
        raise ValidationError(
            "There is no profit above the account size to pay out.",
            code="no_profit",
            field="account_id",
        )
    product = account.challenge.product
    trader, firm = split_profit(profit, product.profit_split_bps)
    now = clock.now()
    with transaction.atomic():
        payout = Payout(
            request_key=request_id,
            account=account,
            client_id=account.challenge.client_id,
            currency=product.currency,
            profit=profit,
            trader_share=trader,
            firm_share=firm,
            split_bps=product.profit_split_bps,
            actor=actor,
            created_at=now,
            updated_at=now,
        )
        payout.comment = transfer_comment(payout.id, prefix=COMMENT_PREFIX)
        payout.save(force_insert=True)
        audit.record(
            actor=actor,
            action="propfirm.payout_requested",
            object_type="propfirm_payout",
            object_id=str(payout.id),
            after={"profit": profit, "trader_share": trader, "firm_share": firm,
                   "split_bps": product.profit_split_bps, "login": account.login},
        )  # fmt: skip
    payout = _finish_payout(payout, port=port)
    if method_id is not None and payout.state == PayoutState.PAID and payout.trader_share > 0:
        payout = _request_withdrawal(payout, method_id, by)
    return payout


def _finish_payout(payout: Payout, *, port: PlatformPort | None = None) -> Payout:
    """Take the profit off the platform (once, found again by comment) and pay the share."""
    if payout.state != PayoutState.REQUESTED:
        return payout
    account = PhaseAccount.objects.get(pk=payout.account_id)
    assert account.login is not None
    port = port or port_for(account.server)
    since = int((payout.created_at - timedelta(minutes=5)).timestamp() * 1000)
    deal = port.find_balance_deal(account.login, payout.comment, since)
    ticket = deal.deal if deal is not None else None
    if ticket is None:
        try:
            ticket = port.balance_operation(
                account.login, BalanceOp.WITHDRAWAL, payout.profit, payout.comment
            )
        except ConfirmationLost:
            found = port.find_balance_deal(account.login, payout.comment, since)
            if found is None:
                raise
            ticket = found.deal
        except PlatformError as exc:
            return _payout_failed(payout, exc.message)
    return _pay_share(payout, ticket)


def _payout_failed(payout: Payout, error: str) -> Payout:
    with transaction.atomic():
        payout = Payout.objects.select_for_update().get(pk=payout.pk)
        if payout.state != PayoutState.REQUESTED:
            return payout
        payout.state = PayoutState.FAILED
        payout.error = error
        payout.updated_at = clock.now()
        payout.save(update_fields=["state", "error", "updated_at"])
        audit.record(
            actor="system:propfirm",
            action="propfirm.payout_failed",
            object_type="propfirm_payout",
            object_id=str(payout.id),
            reason=error,
        )
    return payout


def _pay_share(payout: Payout, ticket: int) -> Payout:
    with transaction.atomic():
        payout = Payout.objects.select_for_update().get(pk=payout.pk)
        if payout.state != PayoutState.REQUESTED:
            return payout
        account = PhaseAccount.objects.select_for_update().get(pk=payout.account_id)
        challenge = Challenge.objects.get(pk=account.challenge_id)
        if payout.trader_share > 0:
            result = ledger.transfer(
                f"propfirm.payout:{payout.id}",
                debit_account=payout_account(payout.currency).id,
                credit_account=ledger.wallet_account(payout.client_id, payout.currency).id,
                amount=payout.trader_share,
                currency=payout.currency,
                kind="prop_profit_share",
                metadata={"profit": payout.profit, "firm_share": payout.firm_share,
                          "login": account.login, "ticket": ticket},
                actor=payout.actor,
            )  # fmt: skip
            payout.ledger_transfer_id = result.transfer_id
        now = clock.now()
        payout.state = PayoutState.PAID
        payout.platform_ticket = ticket
        payout.updated_at = now
        payout.save()
        day, _ = PhaseDay.objects.get_or_create(account=account, day=_msc_day(now_msc()))
        day.paid_out += payout.profit
        day.save(update_fields=["paid_out"])
        account.paid_out += payout.profit
        account.save(update_fields=["paid_out"])
        figures = {"profit": payout.profit, "trader_share": payout.trader_share,
                   "firm_share": payout.firm_share, "split_bps": payout.split_bps,
                   "currency": payout.currency}  # fmt: skip
        emit(PayoutPaid(str(challenge.id), challenge.client_id, account.phase_name, "", figures))
        audit.record(
            actor=payout.actor,
            action="propfirm.payout_paid",
            object_type="propfirm_payout",
            object_id=str(payout.id),
            after={**figures, "platform_ticket": ticket},
        )
    return payout


def _request_withdrawal(payout: Payout, method_id: UUID | str, by: Any) -> Payout:
    """Ask payments to withdraw the trader's share (the normal withdrawal flow)."""
    from brokerdesk.payments import services as payments

    try:
        withdrawal = payments.request_withdrawal(
            payout.client_id,
            amount=payout.trader_share,
            currency=payout.currency,
            method_id=method_id,
            request_id=f"propfirm-payout:{payout.id}",
            by=by,
        )
    except DomainError as exc:
        Payout.objects.filter(pk=payout.pk).update(error=exc.message, updated_at=clock.now())
        return replace_payout(payout, error=exc.message)
    Payout.objects.filter(pk=payout.pk).update(withdrawal_id=withdrawal.id, updated_at=clock.now())
    payout.withdrawal_id = withdrawal.id
    return payout


def replace_payout(payout: Payout, **changes: Any) -> Payout:
    """The payout object with ``changes`` applied in memory (after an update by filter)."""
    for key, value in changes.items():
        setattr(payout, key, value)
    return payout


def resume_payouts() -> int:
    """Finish payouts left in ``requested`` (a crash between the platform and the ledger)."""
    cutoff = clock.now() - PAYOUT_STUCK_AFTER
    done = 0
    for payout in Payout.objects.filter(state=PayoutState.REQUESTED, updated_at__lt=cutoff)[:100]:
        try:
            done += _finish_payout(payout).state == PayoutState.PAID
        except (PlatformError, DomainError):
            log.warning("propfirm_payout_resume_failed", payout=str(payout.id), exc_info=True)
    return done
