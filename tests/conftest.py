"""Shared test fixtures."""

from __future__ import annotations

import pytest
from django.db import connection


@pytest.fixture
def on_postgres() -> bool:
    """True when the suite runs on PostgreSQL."""
    return connection.vendor == "postgresql"
