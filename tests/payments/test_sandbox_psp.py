"""The sandbox PSP on its own: API, signed webhooks, faults, settlement files."""

from __future__ import annotations

import csv
import io
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from brokerdesk.payments.connectors.base import InvalidSignature
from brokerdesk.payments.connectors.sandbox import SandboxConnector
from brokerdesk.payments.sandbox import signing
from brokerdesk.payments.sandbox.server import Faults, SandboxPSP
from tests.payments.conftest import API_KEY, SECRET, Receiver


def call(psp: SandboxPSP, method: str, path: str, data: Any = None, key: str = API_KEY) -> Any:
    body = json.dumps(data).encode() if data is not None else b""
    request = urllib.request.Request(  # noqa: S310
        f"{psp.url}{path}",
        data=body if method == "POST" else None,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        raw = response.read()
        return json.loads(raw) if response.headers["Content-Type"] == "application/json" else raw


def psp_for(receiver: Receiver, tmp_path: Any, **kwargs: Any) -> SandboxPSP:
    return SandboxPSP(
        secret=SECRET,
        api_key=API_KEY,
        webhook_url=receiver.url,
        settlement_dir=tmp_path,
        retry_backoff_s=0.01,
        **kwargs,
    )


def test_a_completed_payment_sends_one_signed_webhook_that_verifies(receiver, tmp_path):
    with psp_for(receiver, tmp_path) as psp:
        payment = call(
            psp, "POST", "/v1/payments", {"amount": 100_000, "currency": "USD", "reference": "r1"}
        )
        assert payment["status"] == "pending" and payment["pay_url"].startswith(psp.url)

        call(psp, "POST", f"/v1/payments/{payment['id']}/complete")
        assert psp.wait_idle(5)

    ((_, headers, body),) = receiver.received
    event = SandboxConnector(
        base_url=psp.url, api_key=API_KEY, webhook_secret=SECRET
    ).parse_webhook(body, headers)
    assert (event.kind, event.reference, event.amount, event.currency) == (
        "deposit.succeeded",
        "r1",
        100_000,
        "USD",
    )
    assert event.fee == 1_500  # 150 bps


def test_the_api_refuses_a_wrong_key_and_bad_input(receiver, tmp_path):
    with psp_for(receiver, tmp_path) as psp:
        with pytest.raises(urllib.error.HTTPError) as refused:
            call(
                psp,
                "POST",
                "/v1/payments",
                {"amount": 1, "currency": "USD", "reference": "r"},
                key="nope",
            )
        assert refused.value.code == 401
        with pytest.raises(urllib.error.HTTPError) as bad:
            call(psp, "POST", "/v1/payments", {"amount": 1.5, "currency": "USD", "reference": "r"})
        assert bad.value.code == 400
        payment = call(
            psp, "POST", "/v1/payments", {"amount": 5, "currency": "USD", "reference": "r"}
        )
        call(psp, "POST", f"/v1/payments/{payment['id']}/decline")
        with pytest.raises(urllib.error.HTTPError) as illegal:
            call(psp, "POST", f"/v1/payments/{payment['id']}/complete")
        assert illegal.value.code == 400


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda body, header: (body + b" ", header), "does not match"),
        (lambda body, header: (body, signing.sign(body, "another-secret")), "does not match"),
        (
            lambda body, header: (
                body,
                signing.sign(body, SECRET, timestamp=int(time.time()) - 3600),
            ),
            "tolerance",
        ),
        (lambda body, header: (body, None), "missing"),
        (lambda body, header: (body, "v1=abc"), "malformed"),
    ],
    ids=["tampered-body", "wrong-secret", "replayed-old", "missing", "malformed"],
)
def test_a_forged_or_replayed_signature_is_refused(tamper, message):
    body = b'{"id":"evt_1","type":"payment.succeeded","data":{"object":{}}}'
    header = signing.sign(body, SECRET)
    connector = SandboxConnector(base_url="http://x", api_key="k", webhook_secret=SECRET)
    bad_body, bad_header = tamper(body, header)
    headers = {} if bad_header is None else {signing.HEADER: bad_header}

    with pytest.raises(InvalidSignature) as error:
        connector.parse_webhook(bad_body, headers)
    assert message in error.value.message
    assert SECRET not in error.value.message


def test_duplicates_arrive_at_once_or_200_ms_apart(receiver, tmp_path):
    with psp_for(
        receiver, tmp_path, faults=Faults(duplicate="delayed", duplicate_delay_ms=200)
    ) as psp:
        p = psp.create("payment", {"amount": 10, "currency": "USD", "reference": "a"})
        psp.act(p["id"], "complete")
        assert psp.wait_idle(5)
        (t1, _, b1), (t2, _, b2) = receiver.received
        assert b1 == b2 and 0.15 <= abs(t2 - t1) <= 1.0

        receiver.received.clear()
        psp.faults.update({"duplicate": "instant"})
        p = psp.create("payment", {"amount": 10, "currency": "USD", "reference": "b"})
        psp.act(p["id"], "complete")
        assert psp.wait_idle(5)
        (t1, _, b1), (t2, _, b2) = receiver.received
        assert b1 == b2 and abs(t2 - t1) < 0.15


def test_reordering_delivers_a_later_event_first(receiver, tmp_path):
    with psp_for(receiver, tmp_path, faults=Faults.parse("reorder=1")) as psp:
        first = psp.create("payment", {"amount": 10, "currency": "USD", "reference": "first"})
        second = psp.create("payment", {"amount": 20, "currency": "USD", "reference": "second"})
        psp.act(first["id"], "complete")
        psp.act(second["id"], "complete")
        assert psp.wait_idle(5)

    refs = [e["data"]["object"]["reference"] for e in receiver.events()]
    assert refs == ["second", "first"]


def test_failed_deliveries_are_retried_until_accepted(receiver, tmp_path):
    with psp_for(receiver, tmp_path, faults=Faults(fail_deliveries=2)) as psp:
        p = psp.create("payment", {"amount": 10, "currency": "USD", "reference": "a"})
        psp.act(p["id"], "complete")
        assert psp.wait_idle(5)

    assert [d["attempt"] for d in psp.deliveries] == [1, 2, 3]
    assert [d["status"] for d in psp.deliveries] == [0, 0, 200]
    assert len(receiver.received) == 1


def test_a_receiver_error_is_retried_then_given_up(tmp_path):
    failing = Receiver(status=500)
    failing.thread.start()
    try:
        with psp_for(failing, tmp_path, max_attempts=3) as psp:
            p = psp.create("payment", {"amount": 10, "currency": "USD", "reference": "a"})
            psp.act(p["id"], "complete")
            assert psp.wait_idle(5)
    finally:
        failing.server.shutdown()
        failing.server.server_close()
    assert [d["status"] for d in psp.deliveries] == [500, 500, 500]


def test_the_decline_fault_turns_completions_into_failures(receiver, tmp_path):
    with psp_for(receiver, tmp_path, faults=Faults(decline=True)) as psp:
        p = psp.create("payment", {"amount": 10, "currency": "USD", "reference": "a"})
        assert psp.act(p["id"], "complete")["status"] == "failed"
        assert psp.wait_idle(5)
    assert receiver.events()[0]["type"] == "payment.failed"


def test_settlement_batches_settled_payments_once_with_fees_into_a_csv_file(receiver, tmp_path):
    with psp_for(receiver, tmp_path, fee_bps=200, fee_fixed=30) as psp:
        paid = psp.create("payment", {"amount": 10_000, "currency": "USD", "reference": "d1"})
        open_ = psp.create("payment", {"amount": 5_000, "currency": "USD", "reference": "d2"})
        payout = psp.create("payout", {"amount": 3_000, "currency": "USD", "reference": "w1"})
        psp.act(paid["id"], "complete")
        psp.act(payout["id"], "paid")

        batch = call(psp, "POST", "/v1/settlements")
        again = psp.settle()
        text = call(psp, "GET", f"/v1/settlements/{batch['batch_id']}").decode()

    rows = list(csv.DictReader(io.StringIO(text)))
    assert batch["rows"] == 2 and again["rows"] == 0
    assert (tmp_path / f"settlement-{batch['batch_id']}.csv").read_text() == text
    by_ref = {r["reference"]: r for r in rows}
    assert open_["reference"] not in by_ref
    assert (by_ref["d1"]["gross"], by_ref["d1"]["fee"], by_ref["d1"]["net"]) == (
        "10000",
        "230",
        "9770",
    )
    assert (by_ref["w1"]["row_type"], by_ref["w1"]["net"]) == ("payout", str(-3000 - 90))


def test_the_hosted_page_shows_the_payment_and_completes_it(receiver, tmp_path):
    with psp_for(receiver, tmp_path) as psp:
        p = psp.create("payment", {"amount": 4_200, "currency": "EUR", "reference": "<ref>"})
        with urllib.request.urlopen(p["pay_url"], timeout=5) as page:  # noqa: S310
            html = page.read().decode()
        assert "4200 EUR" in html and "&lt;ref&gt;" in html and "complete" in html
        request = urllib.request.Request(f"{p['pay_url']}/complete", data=b"", method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=5):  # noqa: S310
            pass
        assert psp.get(p["id"])["status"] == "succeeded"
        assert psp.wait_idle(5)


def test_faults_parse_and_refuse_unknown_names():
    assert Faults.parse("duplicate=instant,delay_ms=5,reorder=yes") == Faults(
        duplicate="instant", delay_ms=5, reorder=True
    )
    with pytest.raises(ValueError, match="unknown fault"):
        Faults.parse("explode=1")
    with pytest.raises(ValueError, match="off, instant or delayed"):
        Faults.parse("duplicate=twice")
