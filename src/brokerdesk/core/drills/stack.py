"""The system under test of a drill: real processes with money moving and deals flowing.

:class:`DrillStack` runs, against the database and bus this process is configured with:

* ``brokerdesk simulator mt5`` making deals for its simulated traders (with duplicated and
  reordered events), ``brokerdesk bridge`` and ``brokerdesk worker`` (every consumer, the
  relay and the periodic jobs) as subprocesses — :class:`~brokerdesk.trading.bench.Pipeline`;
* the sandbox PSP (in this process), whose signed webhooks go to ``payments.receive_webhook``
  — the same code the webhook endpoint runs — and are retried by the PSP while it fails;
* client journeys (:meth:`DrillStack.journey`): deposit by card → wallet → trading account →
  back to the wallet → withdrawal paid out. Every step carries an idempotency key and is
  retried with the same key while the database or the platform link is down, as a client
  or an integration would.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import structlog
from django.db import InterfaceError, OperationalError, connection

from brokerdesk.trading.bench import Pipeline, stored_count

log = structlog.get_logger(__name__)

T = TypeVar("T")

SECRET = "whsec_drill_" + uuid.uuid4().hex
API_KEY = "sk_drill_" + uuid.uuid4().hex[:16]
CURRENCY = "USD"

#: What one journey moves (minor units): deposit, to trading, back to wallet, withdrawn.
DEPOSIT = 50_000
TO_TRADING = 30_000
TO_WALLET = 10_000
WITHDRAW = 20_000


def _transient_errors() -> tuple[type[BaseException], ...]:
    """Failures a retry with the same idempotency key may get past."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from brokerdesk.trading.platform.port import ConfirmationLost, PlatformConnectionError

    return (
        OperationalError,
        InterfaceError,
        PlatformConnectionError,
        ConfirmationLost,
        RedisConnectionError,
    )


def retrying(what: str, action: Callable[[], T], timeout: float = 90.0) -> T:
    """Run ``action`` until it succeeds; on a transient failure drop the (maybe broken)
    database connection and try again with the same arguments, for up to ``timeout`` s."""
    transient = _transient_errors()
    deadline = time.monotonic() + timeout
    while True:
        try:
            return action()
        except transient as exc:
            if time.monotonic() > deadline:
                raise
            log.debug("drill_retry", step=what, error=type(exc).__name__)
            with contextlib.suppress(Exception):
                connection.close()
            time.sleep(0.2)


def wait_for(check: Callable[[], bool], timeout: float, what: str, every: float = 0.1) -> float:
    """Poll ``check`` (itself retried over transient failures) until true; return the seconds."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if retrying(what, check):
            return time.monotonic() - started
        time.sleep(every)
    raise TimeoutError(f"{what}: not reached in {timeout:.0f} s")


@dataclass
class Client:
    """A drill client: verified, with a USD trading account on the simulator."""

    client_id: uuid.UUID
    account: Any


@dataclass
class JourneyResult:
    """What a journey did; ``error`` is empty when it finished."""

    client_id: str
    deposit_id: str = ""
    transfer_ids: list[str] = field(default_factory=list)
    withdrawal_id: str = ""
    error: str = ""


class DrillPipeline(Pipeline):
    """The trading pipeline with the complete worker (all consumers, relay, periodic jobs)."""

    def start_worker(self, *, relay: bool = True, name: str = "worker") -> None:
        """``brokerdesk worker``: every registered consumer, the relay and the periodic jobs."""
        self._spawn(name, ["worker", *([] if relay else ["--no-relay"])], self.env())

    def start_slow_worker(self, delay_file: Path) -> None:
        """The worker with a per-message delay read from ``delay_file`` (slow consumer drill)."""
        args = ["-m", "brokerdesk.core.drills.slow_worker", "--delay-file", str(delay_file)]
        self._spawn_python("worker", args)

    def _spawn_python(self, name: str, args: list[str]) -> None:
        import subprocess
        import sys

        log_file = self.logs.get(name) or (self.workdir / f"{self.server}-{name}.log").open("ab")
        self.logs[name] = log_file
        self.processes[name] = subprocess.Popen(  # noqa: S603
            [sys.executable, *args], stdout=log_file, stderr=log_file, env=self.env()
        )

    def close(self) -> None:
        """SIGTERM every process at once, then wait (SIGKILL after 5 s); close the logs."""
        import subprocess

        if self._control is not None:
            with contextlib.suppress(Exception):
                self._control.disconnect()
            self._control = None
        procs = list(self.processes.values())
        self.processes.clear()
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        for log_file in self.logs.values():
            log_file.close()
        self.logs.clear()

    def running(self, name: str) -> bool:
        """True when the process ``name`` is alive."""
        proc = self.processes.get(name)
        return proc is not None and proc.poll() is None


class DrillStack:
    """Simulator, bridge, worker and sandbox PSP, plus the journeys that move money."""

    def __init__(self, workdir: Path, *, size: int, rate: float, faults: str) -> None:
        self.workdir = workdir
        self.size = size
        self.rate = rate
        self.faults = faults
        self.pipe = DrillPipeline(
            workdir, rate=rate, traders=max(10, size), faults=faults, seed=9, claim_idle_ms=2000
        )
        self.psp: Any = None
        self.port: Any = None
        self.started_at = time.time()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start every process and the PSP; wait until deals are being stored."""
        from brokerdesk.compliance import services as compliance
        from brokerdesk.payments import connectors
        from brokerdesk.payments.connectors.sandbox import SandboxConnector
        from brokerdesk.payments.sandbox.server import SandboxPSP
        from brokerdesk.trading.platform.simulator_adapter import SimulatorAdapter

        compliance.load_bundled_rule_sets()
        self.pipe.start_simulator()
        self.pipe.start_worker()
        self.pipe.start_bridge()
        self.psp = SandboxPSP(
            secret=SECRET,
            api_key=API_KEY,
            webhook_url="inprocess:payments.receive_webhook",
            settlement_dir=self.workdir / "settlements",
            max_attempts=60,
            retry_backoff_s=0.05,
        )
        self.psp.transport = self._deliver_webhook
        self.psp.start()
        connectors.register(
            SandboxConnector(base_url=self.psp.url, api_key=API_KEY, webhook_secret=SECRET)
        )
        self.port = SimulatorAdapter(self.pipe.server, port=self.pipe.port, timeout=30)
        self.port.connect()
        wait_for(lambda: stored_count(self.pipe.server) > 0, 60, "first deals stored")

    def close(self) -> None:
        """Stop everything this stack started."""
        from brokerdesk.payments import connectors

        if self.port is not None:
            with contextlib.suppress(Exception):
                self.port.disconnect()
        if self.psp is not None:
            self.psp.stop()
            connectors.unregister("sandbox")
        self.pipe.close()

    def _deliver_webhook(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """The PSP's HTTP POST, handed to the webhook service in-process: 200 when handled,
        503 when the database is unreachable (the PSP then retries), 400 otherwise."""
        from brokerdesk.payments import services as payments

        try:
            payments.receive_webhook("sandbox", body, headers)
        except (OperationalError, InterfaceError):
            with contextlib.suppress(Exception):
                connection.close()
            return 503
        except Exception:
            log.warning("drill_webhook_refused", exc_info=True)
            return 400
        return 200

    # --- production --------------------------------------------------------------------------

    def resume_production(self) -> None:
        """Simulated traders trade again at the stack's rate, with the configured faults."""
        self.pipe.control("set_rate", rate=self.rate, tick_seconds=0.1)
        self.pipe.control("faults", **_fault_values(self.faults))

    def pause_production(self) -> int:
        """No more simulated deals; returns how many the simulator has made."""
        self.pipe.stop_production()
        self._release_held_event()
        return self.produced()

    def _release_held_event(self) -> None:
        """The simulator's reorder fault holds an event back until it sends the next one; once
        production stops there is no next one, so one small trade of a simulated trader (not
        a drill client) sends it. A real trade server does not hold events back."""
        first = json.loads(self.pipe.deal_log.read_text().partition("\n")[0])
        self.pipe.control(
            "trade_open", login=int(first["Login"]), symbol="EURUSD", action=0, volume=100
        )

    def stored(self) -> int:
        """Deals of this server stored so far."""
        return retrying("count deals", lambda: stored_count(self.pipe.server))

    def produced(self) -> int:
        """Deals the simulator has made so far."""
        return int(self.pipe.control("stats")["deals"])

    # --- clients and journeys ----------------------------------------------------------------

    def new_clients(self, tag: str, count: int) -> list[Client]:
        """``count`` verified clients, each with a trading account (before any fault)."""
        from brokerdesk.clients import services as clients
        from brokerdesk.compliance import services as compliance
        from brokerdesk.compliance.kyc import KycState
        from brokerdesk.trading.services import open_trading_account

        made: list[Client] = []
        for i in range(count):
            client = clients.register_individual(
                email=f"drill-{tag}-{i}@example.com",
                first_name="Drill",
                last_name=f"Client{i}",
                date_of_birth=date(1980, 1, 1),
                country="CY",
                jurisdiction="cysec",
                phone="+357 22 123456",
                by="system:drill",
            )
            for step in (KycState.UNDER_VERIFICATION, KycState.APPROVED):
                compliance.transition_kyc(
                    client.pk, step, by="system:drill", reason="drill", provider="sumsub"
                )
            account = open_trading_account(
                self.port, client_id=str(client.pk), name=f"Drill {tag} {i}",
                group="real\\standard", leverage=100, currency=CURRENCY,
            )  # fmt: skip
            made.append(Client(client.pk, account))
        return made

    def run_journeys(self, tag: str, clients: list[Client], threads: int = 2) -> Any:
        """Start every client's journey on a small pool; returns the futures."""
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"journey-{tag}")
        futures = [pool.submit(self._journey_thread, tag, c) for c in clients]
        pool.shutdown(wait=False)
        return futures

    def _journey_thread(self, tag: str, client: Client) -> JourneyResult:
        try:
            return self.journey(tag, client)
        except Exception as exc:  # reported, and the invariants will show the damage
            log.warning("drill_journey_failed", exc_info=True)
            return JourneyResult(str(client.client_id), error=f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()

    def journey(self, tag: str, client: Client) -> JourneyResult:
        """Deposit → trading account → back → withdrawal paid, each step keyed and retried."""
        from brokerdesk.payments import queries as payment_queries
        from brokerdesk.payments import services as payments
        from brokerdesk.trading import transfers
        from brokerdesk.trading.models import TransferState

        key = f"drill:{tag}:{client.client_id}"
        result = JourneyResult(str(client.client_id))
        deposit = retrying(
            "deposit intent",
            lambda: payments.create_deposit_intent(
                client.client_id, amount=DEPOSIT, currency=CURRENCY, request_id=f"{key}:dep",
                by="system:drill", method_token=f"card_{tag}",
            ),
        )  # fmt: skip
        result.deposit_id = str(deposit.id)
        if not deposit.provider_id:
            raise RuntimeError(f"deposit {deposit.reference} was never created at the PSP")
        self._psp_act(deposit.provider_id, "complete")
        wait_for(
            lambda: payment_queries.get_deposit(deposit.id).status == "confirmed",
            90,
            "deposit confirmed",
        )
        for amount, direction, step in (
            (TO_TRADING, transfers.transfer_to_trading, "to-trading"),
            (TO_WALLET, transfers.transfer_to_wallet, "to-wallet"),
        ):
            transfer = self._transfer(direction, client, amount, f"{key}:{step}")
            result.transfer_ids.append(str(transfer.id))
            if transfer.state != TransferState.COMPLETED:
                raise RuntimeError(f"transfer {transfer.id} ended {transfer.state}")
        method_id = retrying(
            "withdrawal method", lambda: payment_queries.withdrawal_methods(client.client_id)[0].id
        )  # the card the deposit was paid with (return to source)
        withdrawal = retrying(
            "withdrawal",
            lambda: payments.request_withdrawal(
                client.client_id, amount=WITHDRAW, currency=CURRENCY, method_id=method_id,
                request_id=f"{key}:wd", by=f"client:{client.client_id}",
            ),
        )  # fmt: skip
        result.withdrawal_id = str(withdrawal.id)
        sent = retrying("payout", lambda: self._send_payout(withdrawal.id))
        self._psp_act(sent.provider_id, "paid")
        wait_for(
            lambda: payment_queries.get_withdrawal(withdrawal.id).status == "paid",
            90,
            "withdrawal paid",
        )
        return result

    def _transfer(self, direction: Any, client: Client, amount: int, request_key: str) -> Any:
        """A wallet↔trading transfer, resumed under the same key until it is final."""
        from brokerdesk.trading.models import TransferState

        deadline = time.monotonic() + 120
        while True:
            transfer = retrying(
                "transfer", lambda: direction(self.port, client.account, amount, request_key)
            )
            if transfer.state in (TransferState.COMPLETED, TransferState.FAILED):
                return transfer
            if time.monotonic() > deadline:
                return transfer
            time.sleep(0.5)  # waiting for the platform's answer: ask again

    def _send_payout(self, withdrawal_id: uuid.UUID) -> Any:
        from brokerdesk.payments import queries as payment_queries
        from brokerdesk.payments import services as payments

        current = payment_queries.get_withdrawal(withdrawal_id)
        if current.status in ("sent", "paid") and current.provider_id:
            return current
        return payments.send_payout(withdrawal_id, by="system:drill")

    def _psp_act(self, provider_id: str, action: str) -> None:
        """The client pays / the provider pays out — once, whatever retries happen around it."""
        done = {"complete": "succeeded", "paid": "paid"}[action]
        if self.psp.get(provider_id)["status"] != done:
            self.psp.act(provider_id, action)


def _fault_values(faults: str) -> dict[str, float]:
    """``"duplicate=0.02,reorder=0.02"`` → ``{"duplicate": 0.02, "reorder": 0.02}``."""
    values: dict[str, float] = {"duplicate": 0.0, "reorder": 0.0}
    for part in filter(None, faults.split(",")):
        name, _, value = part.partition("=")
        values[name.strip()] = float(value)
    return values


def journeys_done(futures: list[Any], timeout: float) -> list[JourneyResult]:
    """Wait for every journey; a journey still running at the timeout counts as failed."""
    results: list[JourneyResult] = []
    deadline = time.monotonic() + timeout
    for future in futures:
        try:
            results.append(future.result(timeout=max(deadline - time.monotonic(), 0.1)))
        except Exception as exc:
            results.append(JourneyResult("?", error=f"not finished: {type(exc).__name__}"))
    return results


class Sampler:
    """Samples (seconds, produced minus stored) in a thread: the ingest backlog over time."""

    def __init__(self, stack: DrillStack, every: float = 0.5) -> None:
        self.stack = stack
        self.every = every
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drill-sampler", daemon=True)
        self._started = time.monotonic()

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        from brokerdesk.trading.platform.simulator_adapter import SimulatorAdapter

        control = SimulatorAdapter("sampler", port=self.stack.pipe.port, timeout=10)
        control.connect()
        try:
            while not self._stop.wait(self.every):
                with contextlib.suppress(Exception):
                    produced = int(control.control("stats")["deals"])
                    stored = stored_count(self.stack.pipe.server)
                    at = round(time.monotonic() - self._started, 2)
                    self.samples.append((at, max(produced - stored, 0)))
        finally:
            control.disconnect()
            connection.close()

    def backlog(self) -> int:
        """The latest sampled backlog."""
        return self.samples[-1][1] if self.samples else 0
