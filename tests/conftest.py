"""Shared test fixtures."""

from __future__ import annotations

import pytest
from django.db import connection


@pytest.fixture
def on_postgres() -> bool:
    """True when the suite runs on PostgreSQL."""
    return connection.vendor == "postgresql"


@pytest.fixture(autouse=True)
def _default_language_after_each_test():  # type: ignore[no-untyped-def]
    """A request in another language (the language switcher's tests) leaves that language
    active in the thread; later tests that read English messages must not inherit it."""
    yield
    from django.conf import settings
    from django.utils import translation

    translation.activate(settings.LANGUAGE_CODE)
