"""Logs are JSON lines, and secrets never reach them."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from brokerdesk.core import logging as bd_logging
from brokerdesk.core.logging import REDACTED, redact, redact_text

VISA = "4111 1111 1111 1111"  # passes the Luhn check


def test_secret_keys_are_redacted_at_any_depth():
    event = {
        "event": "login",
        "user": "ann",
        "password": "hunter2",
        "headers": {"Authorization": "Bearer abc.def", "Accept": "json"},
        "psp": [{"api_key": "sk_live_123", "amount": 100}],
        "webhook_signature": "deadbeef",
        "client_secret": "s3",
        "refresh_token": "r1",
        "card_number": "4000056655665556",
        "cvv": "123",
    }

    cleaned = redact(event)

    assert cleaned["user"] == "ann"
    assert cleaned["headers"]["Accept"] == "json"
    assert cleaned["psp"][0]["amount"] == 100
    for value in (
        cleaned["password"],
        cleaned["headers"]["Authorization"],
        cleaned["psp"][0]["api_key"],
        cleaned["webhook_signature"],
        cleaned["client_secret"],
        cleaned["refresh_token"],
        cleaned["card_number"],
        cleaned["cvv"],
    ):
        assert value == REDACTED
    assert event["password"] == "hunter2"  # the caller's dict is left alone


def test_harmless_keys_that_merely_contain_letters_of_a_secret_word_stay():
    cleaned = redact({"footprint": "x", "spinner": "y", "company": "z", "passed": True})
    assert cleaned == {"footprint": "x", "spinner": "y", "company": "z", "passed": True}


def test_secrets_inside_text_are_masked():
    text = (
        f"POST /cb?token=abc123&x=1 password: hunter2 Authorization: Bearer eyJhbGc.x.y "
        f"card {VISA} order 1234567890123"
    )

    masked = redact_text(text)

    for secret in ("abc123", "hunter2", "eyJhbGc", "4111 1111 1111"):
        assert secret not in masked
    assert "x=1" in masked
    assert "1111" in masked  # the last four digits stay, for support
    assert "1234567890123" in masked  # not a card number (fails the Luhn check)


def _capture(logger_name: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(bd_logging.json_formatter())
    logger = logging.getLogger(logger_name)
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


@pytest.fixture
def captured():
    logger, stream = _capture("brokerdesk.test_logging")
    yield stream
    logger.handlers = []
    logger.propagate = True


def test_structlog_writes_json_without_secrets(captured):
    bd_logging.configure()
    log = structlog.get_logger("brokerdesk.test_logging")

    log.info("psp_call", api_key="sk_live_999", amount=1050, card=VISA)

    line = json.loads(captured.getvalue().strip().splitlines()[-1])
    assert line["event"] == "psp_call"
    assert line["level"] == "info"
    assert line["amount"] == 1050
    assert line["api_key"] == REDACTED
    assert "sk_live_999" not in captured.getvalue()
    assert "4111 1111 1111" not in captured.getvalue()
    assert "timestamp" in line


def test_standard_library_records_are_json_and_redacted_too(captured):
    logging.getLogger("brokerdesk.test_logging").warning(
        "retrying with password=%s", "hunter2", extra={"secret": "zzz", "attempt": 2}
    )

    line = json.loads(captured.getvalue().strip().splitlines()[-1])
    assert line["level"] == "warning"
    assert line["attempt"] == 2
    assert line["secret"] == REDACTED
    assert "hunter2" not in captured.getvalue()
    assert "zzz" not in captured.getvalue()


def test_configure_is_idempotent():
    bd_logging.configure()
    first = structlog.get_config()["processors"]
    bd_logging.configure()
    assert structlog.get_config()["processors"] == first
    assert bd_logging.redact_secrets in first
