"""Real processes: simulator → ``brokerdesk bridge`` → bus → ``brokerdesk worker`` → database.

The worker and the bridge are killed with SIGKILL mid-stream and restarted; the stored deals
must equal the simulator's own deal log (no loss, no duplicate, same checksum) and the account
summaries must equal the platform's balances.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from brokerdesk.trading.bench import Pipeline, _drop_stream, stored_count
from brokerdesk.trading.models import AccountSummary
from brokerdesk.trading.platform.simulator_adapter import SimulatorAdapter

pytestmark = pytest.mark.django_db(transaction=True)


def wait_for_count(server: str, at_least: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = stored_count(server)
        if n >= at_least:
            return n
        time.sleep(0.2)
    raise AssertionError(f"only {stored_count(server)} deals stored, waited for {at_least}")


def test_sigkill_of_worker_and_bridge_mid_stream_loses_and_duplicates_nothing(
    tmp_path: Path, on_postgres: bool
) -> None:
    # SQLite (one writer shared by bridge, bus, consumer and relay) keeps up with less.
    rate = 600 if on_postgres else 400
    pipe = Pipeline(tmp_path, rate=rate, traders=30, faults="duplicate=0.05,reorder=0.05", seed=5)
    try:
        # Given the whole pipeline running on a firehose with duplicates and reorders,
        pipe.start_simulator()
        pipe.start_worker()
        pipe.start_bridge()
        before = wait_for_count(pipe.server, rate, timeout=120)
        # when the consumer and then the bridge die with SIGKILL mid-stream
        pipe.kill("worker")
        time.sleep(0.3)
        pipe.kill("bridge")
        time.sleep(1.0)  # the platform keeps trading meanwhile
        # and come back,
        pipe.start_bridge()
        pipe.start_worker()
        wait_for_count(pipe.server, before + 2 * rate, timeout=120)
        produced = pipe.stop_production()
        # generous: CI runs two suites at once; on failure, show how many are lost or extra
        assert pipe.wait_stored(produced, timeout=240), pipe.compare()
        time.sleep(0.5)  # anything still in flight would show up as a duplicate or extra
        # then the stored deals are exactly the simulator's log,
        result = pipe.compare()
        assert result["deals"] == produced
        assert (result["lost"], result["duplicated"], result["unexpected"]) == (0, 0, 0)
        assert result["checksum_match"]
        # and each login's summary balance is the platform's balance.
        port = SimulatorAdapter("check", port=pipe.port)
        port.connect()
        try:
            summaries = {s.login: s for s in AccountSummary.objects.filter(server=pipe.server)}
            assert len(summaries) == 30
            for login, summary in summaries.items():
                state = port.account_state(login)
                assert (summary.balance, summary.credit) == (state.balance, state.credit), login
            assert sum(s.deals for s in summaries.values()) == produced
        finally:
            port.disconnect()
    finally:
        pipe.close()
        _drop_stream(pipe.server)
