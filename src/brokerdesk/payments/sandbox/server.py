"""The sandbox PSP: a small payment service provider that runs on its own HTTP port.

It takes payments (deposits) and payouts, hands out a hosted "pay" page, completes or
declines them on request, sends HMAC-SHA256-signed webhooks (``Sandbox-Signature:
t=…,v1=…``) to a callback URL, and settles in batches with fees into CSV settlement files.
Faults are switchable at start or at run time: duplicated webhooks (at once or some
milliseconds apart), delays, reordering, failed delivery attempts (retried) and declines.

HTTP API (JSON, ``Authorization: Bearer <api key>``):

- ``POST /v1/payments`` {amount, currency, reference, metadata?} → the payment with ``pay_url``
- ``POST /v1/payouts`` {amount, currency, reference, destination?} → the payout
- ``GET /v1/payments/<id>``, ``GET /v1/payouts/<id>``
- ``POST /v1/payments/<id>/complete|decline|chargeback``, ``POST /v1/payouts/<id>/paid|fail|return``
- ``POST /v1/settlements`` → {batch_id, path, rows}; ``GET /v1/settlements/<batch_id>`` → CSV
- ``POST /v1/faults`` {duplicate, duplicate_delay_ms, delay_ms, reorder, fail_deliveries, decline}
- ``POST /v1/events/<id>/resend``; ``GET /v1/deliveries``
- ``GET /pay/<id>`` (hosted page; buttons POST ``/pay/<id>/complete`` or ``/decline``)

In tests: ``with SandboxPSP(secret=…, webhook_url=…) as psp: …`` binds a free port and stops
every thread on exit.
"""

from __future__ import annotations

import csv
import html
import io
import json
import queue
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from brokerdesk.payments.sandbox.signing import HEADER, sign

SETTLEMENT_COLUMNS = [
    "batch_id",
    "row_type",
    "psp_id",
    "reference",
    "currency",
    "gross",
    "fee",
    "net",
    "occurred_at",
    "settled_at",
]


@dataclass
class Faults:
    """Switchable faults. ``duplicate`` is ``off``, ``instant`` or ``delayed``."""

    duplicate: str = "off"
    duplicate_delay_ms: int = 200
    delay_ms: int = 0
    reorder: bool = False  # hold each event back and deliver it after the next one
    fail_deliveries: int = 0  # the first N delivery attempts of each event fail (then retried)
    decline: bool = False  # completing a payment declines it instead

    @classmethod
    def parse(cls, text: str) -> Faults:
        """Parse ``duplicate=instant,delay_ms=100,reorder=1,fail_deliveries=2``."""
        faults = cls()
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, _, value = part.partition("=")
            faults.update({key.strip(): value.strip()})
        return faults

    def update(self, values: dict[str, Any]) -> None:
        """Set the given faults (unknown names raise ``ValueError``)."""
        known = {f.name: f.type for f in fields(self)}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"unknown fault {key!r}; one of {sorted(known)}")
            if key == "duplicate":
                if value not in ("off", "instant", "delayed"):
                    raise ValueError("duplicate is off, instant or delayed")
                self.duplicate = str(value)
            elif key in ("reorder", "decline"):
                setattr(self, key, str(value).lower() in ("1", "true", "yes", "on"))
            else:
                setattr(self, key, int(value))


# Which settlement rows an object in a status contributes.
_ROW_TYPES: dict[str, dict[str, tuple[str, ...]]] = {
    "payment": {"succeeded": ("payment",), "charged_back": ("payment", "chargeback")},
    "payout": {"paid": ("payout",), "returned": ("payout", "payout_return")},
}


class _NotFound(Exception):
    pass


class _BadRequest(Exception):
    pass


class SandboxPSP:
    """The sandbox PSP's state, webhook sender and HTTP server."""

    def __init__(
        self,
        *,
        secret: str,
        webhook_url: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = "sk_sandbox",
        fee_bps: int = 150,
        fee_fixed: int = 0,
        settlement_dir: Path | str | None = None,
        faults: Faults | None = None,
        max_attempts: int = 5,
        retry_backoff_s: float = 0.05,
        public_url: str | None = None,
    ) -> None:
        self.secret = secret
        self.webhook_url = webhook_url
        self.host = host
        self.port = port
        self.api_key = api_key
        self.fee_bps = fee_bps
        self.fee_fixed = fee_fixed
        self.settlement_dir = Path(settlement_dir) if settlement_dir else None
        self.faults = faults or Faults()
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s
        self.public_url = public_url
        self.objects: dict[str, dict[str, Any]] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self.deliveries: list[dict[str, Any]] = []
        self.settlements: dict[str, str] = {}
        self._settled: set[tuple[str, str]] = set()  # (object id, row type)
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._held: dict[str, Any] | None = None
        self._threads: list[threading.Thread] = []
        self._server: ThreadingHTTPServer | None = None
        self._stopping = threading.Event()
        self.transport: Callable[[str, bytes, dict[str, str]], int] = _post

    # -- lifecycle

    @property
    def url(self) -> str:
        """The base URL the server listens on."""
        return self.public_url or f"http://{self.host}:{self.port}"

    def start(self) -> SandboxPSP:
        """Bind (port 0 picks a free one) and serve in background threads."""
        self._server = ThreadingHTTPServer((self.host, self.port), _handler_for(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        serve = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="sandbox-psp-http",
        )
        send = threading.Thread(target=self._dispatch, name="sandbox-psp-webhooks")
        for t in (serve, send):
            t.daemon = True
            t.start()
        self._threads = [serve, send]
        return self

    def stop(self) -> None:
        """Stop serving and sending; wait for the threads."""
        self._stopping.set()
        self._queue.put(None)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self) -> SandboxPSP:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Start and block until interrupted."""
        self.start()
        try:
            while not self._stopping.wait(0.5):
                pass
        finally:
            self.stop()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until every queued webhook has been delivered (or given up)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.05))
        return True

    # -- operations (HTTP handlers call these; tests may too)

    def create(self, object_type: str, data: dict[str, Any]) -> dict[str, Any]:
        """Create a payment (deposit) or a payout."""
        amount = data.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise _BadRequest("amount must be a positive integer of minor units")
        currency = str(data.get("currency", "")).upper()
        if not re.fullmatch(r"[A-Z0-9]{3,5}", currency):
            raise _BadRequest("currency must be a currency code")
        reference = str(data.get("reference", ""))
        if not reference:
            raise _BadRequest("reference is required")
        with self._lock:  # one object per reference, as a real PSP's idempotency key gives
            twin = next(
                (
                    o
                    for o in self.objects.values()
                    if o["object"] == object_type and o["reference"] == reference
                ),
                None,
            )
        if twin is not None:
            if (twin["amount"], twin["currency"]) != (amount, currency):
                raise _BadRequest("reference already used for a different amount or currency")
            return dict(twin)
        prefix = "pay" if object_type == "payment" else "po"
        obj_id = f"{prefix}_{secrets.token_hex(8)}"
        obj: dict[str, Any] = {
            "id": obj_id,
            "object": object_type,
            "amount": amount,
            "currency": currency,
            "reference": reference,
            "status": "pending",
            "metadata": data.get("metadata") or {},
            "destination": data.get("destination", ""),
            "created": int(time.time()),
            "updated": int(time.time()),
        }
        if object_type == "payment":
            obj["pay_url"] = f"{self.url}/pay/{obj_id}"
        with self._lock:
            self.objects[obj_id] = obj
        return dict(obj)

    def get(self, obj_id: str) -> dict[str, Any]:
        """The payment or payout ``obj_id``."""
        with self._lock:
            if obj_id not in self.objects:
                raise _NotFound(obj_id)
            return dict(self.objects[obj_id])

    _ACTIONS = {
        ("payment", "complete"): ({"pending"}, "succeeded", "payment.succeeded"),
        ("payment", "decline"): ({"pending"}, "failed", "payment.failed"),
        ("payment", "chargeback"): ({"succeeded"}, "charged_back", "payment.chargeback"),
        ("payout", "paid"): ({"pending"}, "paid", "payout.paid"),
        ("payout", "fail"): ({"pending"}, "failed", "payout.failed"),
        ("payout", "return"): ({"paid"}, "returned", "payout.returned"),
    }

    def act(self, obj_id: str, action: str) -> dict[str, Any]:
        """Move a payment or payout (complete, decline, chargeback, paid, fail, return)."""
        with self._lock:
            obj = self.objects.get(obj_id)
            if obj is None:
                raise _NotFound(obj_id)
            if obj["object"] == "payment" and action == "complete" and self.faults.decline:
                action = "decline"
            rule = self._ACTIONS.get((obj["object"], action))
            if rule is None:
                raise _BadRequest(f"unknown action {action!r} for a {obj['object']}")
            allowed, status, event_type = rule
            if obj["status"] not in allowed:
                raise _BadRequest(f"cannot {action} a {obj['object']} that is {obj['status']}")
            obj["status"] = status
            obj["updated"] = int(time.time())
            if status in ("succeeded", "paid"):
                obj["fee"] = self.fee_for(obj["amount"])
            event = self._event(event_type, obj)
        self._enqueue(event)
        return dict(obj)

    def fee_for(self, amount: int) -> int:
        """The PSP's fee on ``amount``: basis points rounded up, plus the fixed part."""
        return -(-amount * self.fee_bps // 10_000) + self.fee_fixed

    def resend(self, event_id: str) -> dict[str, Any]:
        """Queue a stored event again (the same id and body)."""
        with self._lock:
            event = self.events.get(event_id)
            if event is None:
                raise _NotFound(event_id)
        self._enqueue(event)
        return event

    def settle(self, *, now: datetime | None = None) -> dict[str, Any]:
        """Settle every unsettled succeeded payment, chargeback and paid payout into a batch."""
        settled_at = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        batch_id = f"stl_{secrets.token_hex(6)}"
        rows: list[dict[str, Any]] = []
        with self._lock:
            for obj in self.objects.values():
                for row_type in _ROW_TYPES[obj["object"]].get(obj["status"], ()):
                    if (obj["id"], row_type) in self._settled:
                        continue
                    self._settled.add((obj["id"], row_type))
                    rows.append(self._row(batch_id, row_type, obj, settled_at))
            text = _csv(rows)
            self.settlements[batch_id] = text
        path = None
        if self.settlement_dir is not None:
            self.settlement_dir.mkdir(parents=True, exist_ok=True)
            file = self.settlement_dir / f"settlement-{batch_id}.csv"
            file.write_text(text, encoding="utf-8")
            path = str(file)
        return {"batch_id": batch_id, "path": path, "rows": len(rows), "csv": text}

    def _row(self, batch_id: str, row_type: str, obj: dict[str, Any], at: str) -> dict[str, Any]:
        gross = obj["amount"]
        fee = obj.get("fee", 0) if row_type in ("payment", "payout") else 0
        sign_ = 1 if row_type in ("payment", "payout_return") else -1
        net = sign_ * gross - fee
        occurred = datetime.fromtimestamp(obj["updated"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "batch_id": batch_id,
            "row_type": row_type,
            "psp_id": obj["id"],
            "reference": obj["reference"],
            "currency": obj["currency"],
            "gross": gross,
            "fee": fee,
            "net": net,
            "occurred_at": occurred,
            "settled_at": at,
        }

    # -- webhooks

    def _event(self, event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
        event: dict[str, Any] = {
            "id": f"evt_{secrets.token_hex(10)}",
            "type": event_type,
            "created": int(time.time()),
            "data": {"object": dict(obj)},
        }
        self.events[event["id"]] = event
        return event

    def _enqueue(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._in_flight += 1
        self._queue.put(event)

    def _done(self) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def _dispatch(self) -> None:
        while True:
            try:
                event = self._queue.get(timeout=0.3)
            except queue.Empty:
                with self._lock:
                    held, self._held = self._held, None
                if held is not None:  # nothing came after it: deliver it now
                    self._send_with_faults(held)
                continue
            if event is None:
                return
            if self.faults.delay_ms:
                time.sleep(self.faults.delay_ms / 1000)
            with self._lock:
                if self.faults.reorder and self._held is None:
                    self._held = event  # delivered after the next one (or 0.3 s later)
                    continue
                held, self._held = self._held, None
            self._send_with_faults(event)
            if held is not None:
                self._send_with_faults(held)

    def _send_with_faults(self, event: dict[str, Any]) -> None:
        """Deliver in this (the dispatcher's) thread, so events arrive in dispatch order;
        a duplicate goes from a second thread, at the same instant or some time later."""
        body = json.dumps(event, separators=(",", ":")).encode()
        mode = self.faults.duplicate
        barrier = threading.Barrier(2) if mode == "instant" else None
        if mode in ("instant", "delayed"):
            with self._lock:
                self._in_flight += 1
            delay = self.faults.duplicate_delay_ms / 1000 if mode == "delayed" else 0.0
            twin = threading.Timer(delay, self._deliver, args=(event, body, barrier))
            twin.daemon = True
            twin.start()
        self._deliver(event, body, barrier)

    def _deliver(
        self, event: dict[str, Any], body: bytes, barrier: threading.Barrier | None = None
    ) -> None:
        try:
            if barrier is not None:
                barrier.wait(timeout=5)
            for attempt in range(1, self.max_attempts + 1):
                if self._stopping.is_set():
                    return
                status = self._attempt(event, body, attempt)
                if 200 <= status < 300:
                    return
                time.sleep(self.retry_backoff_s * attempt)
        finally:
            self._done()

    def _attempt(self, event: dict[str, Any], body: bytes, attempt: int) -> int:
        record: dict[str, Any] = {
            "event_id": event["id"],
            "type": event["type"],
            "attempt": attempt,
        }
        if not self.webhook_url:
            record["status"] = 0
            record["error"] = "no webhook_url configured"
        elif attempt <= self.faults.fail_deliveries:
            record["status"] = 0
            record["error"] = "simulated delivery failure"
        else:
            headers = {"Content-Type": "application/json", HEADER: sign(body, self.secret)}
            try:
                record["status"] = self.transport(self.webhook_url, body, headers)
            except OSError as exc:
                record["status"] = 0
                record["error"] = type(exc).__name__
        with self._lock:
            self.deliveries.append(record)
        return int(record["status"])


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=SETTLEMENT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/v1/(payments|payouts)$"), "create"),
    ("GET", re.compile(r"^/v1/(?:payments|payouts)/([\w]+)$"), "get"),
    ("POST", re.compile(r"^/v1/(?:payments|payouts)/([\w]+)/(\w+)$"), "act"),
    ("POST", re.compile(r"^/v1/settlements$"), "settle"),
    ("GET", re.compile(r"^/v1/settlements/([\w]+)$"), "settlement"),
    ("POST", re.compile(r"^/v1/faults$"), "faults"),
    ("POST", re.compile(r"^/v1/events/([\w]+)/resend$"), "resend"),
    ("GET", re.compile(r"^/v1/deliveries$"), "deliveries"),
    ("GET", re.compile(r"^/pay/([\w]+)$"), "page"),
    ("POST", re.compile(r"^/pay/([\w]+)/(complete|decline)$"), "page_act"),
]


def _handler_for(psp: SandboxPSP) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "SandboxPSP/1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def _route(self, method: str) -> None:
            path = self.path.split("?", 1)[0]
            for verb, pattern, name in _ROUTES:
                match = pattern.match(path)
                if verb == method and match:
                    try:
                        self._call(name, match.groups())
                    except _NotFound as exc:
                        self._json(404, {"error": "not_found", "id": str(exc)})
                    except (_BadRequest, ValueError) as exc:
                        self._json(400, {"error": "bad_request", "message": str(exc)})
                    return
            self._json(404, {"error": "no_route"})

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if not raw:
                return {}
            try:
                data = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise _BadRequest("body is not JSON") from exc
            if not isinstance(data, dict):
                raise _BadRequest("body must be a JSON object")
            return data

        def _authorised(self) -> bool:
            given = self.headers.get("Authorization", "")
            return secrets.compare_digest(given, f"Bearer {psp.api_key}")

        def _call(self, name: str, groups: tuple[str, ...]) -> None:
            if name in ("page", "page_act"):
                self._page(name, groups)
                return
            if not self._authorised():
                self._json(401, {"error": "unauthorised"})
                return
            if name == "create":
                kind = "payment" if groups[0] == "payments" else "payout"
                self._json(201, psp.create(kind, self._body()))
            elif name == "get":
                self._json(200, psp.get(groups[0]))
            elif name == "act":
                self._json(200, psp.act(groups[0], groups[1]))
            elif name == "settle":
                result = psp.settle()
                self._json(201, {k: v for k, v in result.items() if k != "csv"})
            elif name == "settlement":
                text = psp.settlements.get(groups[0])
                if text is None:
                    raise _NotFound(groups[0])
                self._send(200, text.encode(), "text/csv")
            elif name == "faults":
                psp.faults.update(self._body())
                self._json(200, asdict(psp.faults))
            elif name == "resend":
                self._json(200, psp.resend(groups[0]))
            elif name == "deliveries":
                with psp._lock:
                    self._json(200, {"deliveries": list(psp.deliveries)})

        def _page(self, name: str, groups: tuple[str, ...]) -> None:
            obj = psp.get(groups[0])
            if name == "page_act":
                obj = psp.act(groups[0], groups[1])
            page = (
                "<!doctype html><title>Sandbox PSP</title>"
                f"<h1>Pay {obj['amount']} {html.escape(obj['currency'])} (minor units)</h1>"
                f"<p>Reference {html.escape(obj['reference'])} — status {obj['status']}</p>"
            )
            if obj["status"] == "pending":
                for action in ("complete", "decline"):
                    page += (
                        f'<form method="post" action="/pay/{obj["id"]}/{action}">'
                        f'<button type="submit">{action}</button></form>'
                    )
            self._send(200, page.encode(), "text/html; charset=utf-8")

        def _json(self, status: int, data: Any) -> None:
            self._send(status, json.dumps(data).encode(), "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
