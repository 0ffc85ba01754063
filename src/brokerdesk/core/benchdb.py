"""A database of its own for a benchmark, on the same server as the configured one.

Benchmarks measure the configured engine (SQLite or PostgreSQL) but must not write into the
product's data: ``bench_environment`` returns environment variables that point a child
process at a fresh ``<name>_bench`` database (or ``bench.sqlite3`` file), created empty.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from django.conf import settings


def bench_environment(suffix: str = "bench") -> dict[str, str]:
    """Environment for a child process that uses an empty benchmark database."""
    env = dict(os.environ)
    url = os.environ.get("DATABASE_URL")
    if url:
        parts = urlsplit(url)
        name = f"{parts.path.lstrip('/') or 'brokerdesk'}_{suffix}"
        admin = urlunsplit(parts._replace(path="/postgres"))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        env["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{name}"))
    else:
        filename = f"{suffix}.sqlite3"
        base = Path(settings.DATA_DIR) / filename
        for leftover in (
            base,
            base.with_name(filename + "-wal"),
            base.with_name(filename + "-shm"),
        ):
            leftover.unlink(missing_ok=True)
        env["SQLITE_NAME"] = filename
    return env
