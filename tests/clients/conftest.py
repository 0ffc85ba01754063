"""Fixtures for the clients and compliance tests."""

from __future__ import annotations

import pytest

from brokerdesk.compliance import services


@pytest.fixture(autouse=True)
def bundled_rule_sets(request: pytest.FixtureRequest) -> None:
    """The bundled rule sets: a migration loads them, but a flush may have removed them."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None:
        return
    request.getfixturevalue("transactional_db" if marker.kwargs.get("transaction") else "db")
    services.load_bundled_rule_sets()
