"""What the fuzzing found, pinned down: a ``limit`` out of range is a clear 422, not a 500."""

from __future__ import annotations

import pytest

from tests.api.test_fuzz import admin_session

pytestmark = pytest.mark.django_db

LIMITED = [
    "/api/v1/clients/",
    "/api/v1/clients/01a21ad7-2423-77f1-8de6-816619273bfb/timeline",
    "/api/v1/compliance/queues/new",
    "/api/v1/compliance/screening/queue",
    "/api/v1/compliance/cases",
]


def test_a_limit_out_of_range_is_refused_naming_the_parameter(client: object) -> None:
    client.cookies["sessionid"] = admin_session()  # type: ignore[attr-defined]
    for path in LIMITED:
        for limit in ("-490", "0", "100000"):
            response = client.get(path, {"limit": limit})  # type: ignore[attr-defined]
            assert response.status_code == 422, (path, limit, response.content[:300])
            [error] = response.json()["detail"]
            assert error["loc"] == ["query", "limit"]
            assert error["type"] in ("greater_than_equal", "less_than_equal")
    # and a limit in range is served
    response = client.get("/api/v1/clients/", {"limit": "3"})  # type: ignore[attr-defined]
    assert response.status_code == 200 and response.json() == []
