"""API fuzzing with schemathesis against ``/api/v1/openapi.json`` of the Django app (WSGI).

Every operation of the OpenAPI document gets generated requests (schemathesis' Hypothesis
strategies for its parameters and bodies), sent in-process through the WSGI application:

* as a staff admin who signed in through allauth with a TOTP second factor (the API refuses
  staff without one: ``403 mfa_required``), with a CSRF token so writes get past the check;
* and with no session at all.

Each response must not be a server error (5xx) and must conform to the response schema the
document declares for its status. The run is bounded (a few examples per operation, no
deadline, no shrinking) so it costs about a minute per database.
"""

from __future__ import annotations

import os
import secrets
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import schemathesis
from allauth.account.models import EmailAddress
from allauth.mfa.totp.internal.auth import (
    TOTP,
    format_hotp_value,
    generate_totp_secret,
    hotp_value,
    yield_hotp_counters_from_time,
)
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client as HttpClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from brokerdesk.staff.roles import Role, grant_role
from brokerdesk.wsgi import application

pytestmark = pytest.mark.django_db

SCHEMA_PATH = "/api/v1/openapi.json"
CHECKS = [not_a_server_error, response_schema_conformance]
PASSWORD = "fuzz-" + secrets.token_urlsafe(12)
CSRF_TOKEN = secrets.token_hex(16)  # 32 characters, like Django's own secrets
# A few examples per operation keep the suite quick; FUZZ_EXAMPLES=50 digs deeper by hand.
SIGNED_IN_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "5"))
ANONYMOUS_EXAMPLES = max(SIGNED_IN_EXAMPLES * 3 // 5, 1)


@contextmanager
def in_test_transaction() -> Iterator[None]:
    """Requests run inside the test's transaction: do not let the WSGI handler close the
    connection at each request's start and end (Django's test client does the same around
    each of its requests, and connects the handlers again after it)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def current_code(secret: str) -> str:
    """The authenticator app's code for now."""
    counters = list(yield_hotp_counters_from_time())
    return format_hotp_value(hotp_value(secret, counters[len(counters) // 2]))


def admin_session() -> str:
    """Sign a staff admin in through allauth: password, then the TOTP code; the session id."""
    cache.clear()  # allauth's rate limits count per address: earlier tests' attempts must not
    email = f"fuzz-admin-{secrets.token_hex(4)}@example.com"
    user = get_user_model().objects.create_user(username=email, email=email, password=PASSWORD)
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    grant_role(user, Role.ADMIN)
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    http = HttpClient()
    first = http.post("/accounts/login/", {"login": email, "password": PASSWORD})
    assert first.status_code == 302 and first["Location"] == "/accounts/2fa/authenticate/"
    second = http.post("/accounts/2fa/authenticate/", {"code": current_code(secret)})
    assert second.status_code == 302, second.content[:500]
    # the session really passes the API's second-factor gate
    assert http.get("/api/v1/automations/catalogue").status_code != 403
    return str(http.cookies["sessionid"].value)


def fuzz_every_operation(
    headers: dict[str, str], cookies: dict[str, str], examples: int
) -> tuple[list[str], Counter[int]]:
    """Generate and send ``examples`` requests per operation; the failures found and how
    many responses of each status came back."""
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    with in_test_transaction():
        schema = schemathesis.openapi.from_wsgi(SCHEMA_PATH, application)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) > 50  # the whole document, not an empty one
        for operation in operations:
            _fuzz(operation, headers, cookies, examples, failures, statuses)
    return failures, statuses


def _fuzz(
    operation: Any,
    headers: dict[str, str],
    cookies: dict[str, str],
    examples: int,
    failures: list[str],
    statuses: Counter[int],
) -> None:
    """Up to ``examples`` generated requests to one operation; a failure is appended."""

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def send(case: Any) -> None:
        response = case.call_and_validate(headers=headers, cookies=cookies, checks=CHECKS)
        statuses[response.status_code] += 1

    try:
        send()
    except Unsatisfiable:
        return  # schemathesis could not build a valid request; nothing was sent
    except (Exception, BaseExceptionGroup) as exc:  # report every operation's failure at once
        failures.append(f"{operation.label}: {summary(exc)}")


def summary(exc: BaseException) -> str:
    """The failure's kinds (``ST101 Server error``…) and the request that reproduces it."""
    lines = [line.strip() for line in str(exc).splitlines()]
    kinds = [line.lstrip("- ") for line in lines if line.startswith("- ")]
    curl = next((line for line in lines if line.startswith("curl ")), "")
    return "; ".join([*kinds, curl]) if kinds or curl else (lines[0] if lines else repr(exc))


def test_signed_in_staff_admin_gets_no_server_error_and_only_documented_responses() -> None:
    session = admin_session()
    cookies = {"sessionid": session, "csrftoken": CSRF_TOKEN}
    headers = {"X-CSRFToken": CSRF_TOKEN}
    failures, statuses = fuzz_every_operation(headers, cookies, SIGNED_IN_EXAMPLES)
    assert failures == [], "\n".join(failures)
    # the session was accepted: most answers are not "sign in first"
    answered = sum(statuses.values())
    assert answered > 200 and statuses[401] < answered / 4, statuses
    assert sum(n for status, n in statuses.items() if status < 300) > 20, statuses


def test_anonymous_caller_gets_no_server_error_and_only_documented_responses() -> None:
    failures, statuses = fuzz_every_operation({}, {}, ANONYMOUS_EXAMPLES)
    assert failures == [], "\n".join(failures)
    # without a session almost everything is refused
    assert statuses[401] + statuses[403] > sum(statuses.values()) / 2, statuses
