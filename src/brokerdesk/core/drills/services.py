"""Throwaway PostgreSQL and Redis servers for the drills.

A drill that restarts PostgreSQL or Redis must never touch the servers other people use, so it
runs its own: :class:`PrivatePostgres` is a fresh cluster (``initdb`` + ``pg_ctl`` from the
local PostgreSQL binaries) in a temporary directory on a free port, :class:`PrivateRedis` a
``redis-server`` with an append-only file (``appendfsync always``) on a free port. Both are
started, crashed, restarted and removed by the drill itself; the data directory goes with them.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

#: Where Debian/Ubuntu install the PostgreSQL server binaries.
POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_bin_dir() -> Path | None:
    """The newest local PostgreSQL ``bin`` directory with ``initdb`` and ``pg_ctl``, if any."""
    found = sorted(
        (Path(p) for p in glob.glob(POSTGRES_BIN_GLOB) if (Path(p) / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return found[-1] if found else None


def redis_server_path() -> str | None:
    """The ``redis-server`` executable on PATH, if any."""
    return shutil.which("redis-server")


def _as_postgres_user() -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the ``postgres`` user then."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


def _wait_until(check: object, timeout: float, what: str) -> float:
    """Poll ``check()`` until it is true; return the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with contextlib.suppress(Exception):
            if check():  # type: ignore[operator]
                return time.monotonic() - started
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s")


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of the drill's own, in a temporary directory."""

    bin_dir: Path
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bd-drill-pg-")))
    port: int = field(default_factory=free_port)
    database: str = "brokerdesk"

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.root / "data"

    @property
    def url(self) -> str:
        """``DATABASE_URL`` of the drill's database."""
        return f"postgres://postgres@127.0.0.1:{self.port}/{self.database}"

    def _tool(self, name: str, *args: str) -> None:
        subprocess.run(  # noqa: S603
            [*_as_postgres_user(), str(self.bin_dir / name), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def start(self) -> PrivatePostgres:
        """initdb (first time), start, and create the database."""
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        if not self.data_dir.exists():
            self._tool(
                "initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
                "-E", "UTF8", "--no-sync", "--no-instructions",
            )  # fmt: skip
        self._start()
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [self.database]
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')
        return self

    @property
    def admin_url(self) -> str:
        """The maintenance database's URL."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c shared_buffers=32MB -c max_connections=60"
        )
        self._tool(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self.root / "server.log"),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip

    def crash_and_restart(self, down_s: float = 1.0) -> float:
        """Stop with ``-m immediate`` (a crash: no checkpoint, WAL recovery at start), stay down
        ``down_s``, start again; return the seconds until it accepted connections."""
        started = time.monotonic()
        self._tool("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        time.sleep(down_s)
        self._start()
        _wait_until(self.accepts_connections, 30, "PostgreSQL")
        return time.monotonic() - started

    def accepts_connections(self) -> bool:
        """True when a connection and a query succeed."""
        with psycopg.connect(self.admin_url, connect_timeout=2) as conn:
            return conn.execute("SELECT 1").fetchone() is not None

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        with contextlib.suppress(Exception):
            self._tool("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class PrivateRedis:
    """A ``redis-server`` of the drill's own, with an append-only file fsynced on every write."""

    executable: str
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bd-drill-redis-")))
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``BUS_URL`` of the drill's Redis."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        """Start (replaying the append-only file when there is one) and wait for PING."""
        log = (self.root / "redis.log").open("ab")
        self.process = subprocess.Popen(  # noqa: S603
            [self.executable, *self.options()],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        _wait_until(self.answers, 20, "Redis")
        return self

    def options(self) -> list[str]:
        """Its own port and directory; every write fsynced to the append-only file."""
        return [
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root)),
            *("--appendonly", "yes", "--appendfsync", "always", "--save", ""),
            *("--protected-mode", "no"),
        ]

    def answers(self) -> bool:
        """True when the server answers PING."""
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()

    def crash_and_restart(self, down_s: float = 1.0) -> float:
        """SIGKILL the server, stay down ``down_s``, start it again from its append-only file;
        return the seconds until it answered."""
        started = time.monotonic()
        self._kill(signal.SIGKILL)
        time.sleep(down_s)
        self.start()
        return time.monotonic() - started

    def _kill(self, sig: int) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        self._kill(signal.SIGTERM)
        shutil.rmtree(self.root, ignore_errors=True)
