"""Platform servers the bridge connects to, from settings or the environment.

``settings.PLATFORM_SERVERS`` (a dict name → URL) or the ``PLATFORM_SERVERS`` environment
variable, ``name=url`` pairs separated by commas::

    PLATFORM_SERVERS="live=mt5://1001@10.0.0.5:443,demo=simulator://127.0.0.1:7001"

URL schemes: ``simulator://host:port``, ``mt5://manager_login@host:port``,
``mt4://manager_login@host:port``. Passwords come from ``PLATFORM_SERVER_<NAME>_PASSWORD``
(never from the URL in production). With nothing configured there is one server, ``sim``, on
the local simulator's default port.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from brokerdesk.core.errors import ValidationError
from brokerdesk.trading.platform.port import PlatformPort

DEFAULT_SERVERS = "sim=simulator://127.0.0.1:7001"
KINDS = ("simulator", "mt5", "mt4")


@dataclass(frozen=True)
class ServerConfig:
    """One platform server."""

    name: str
    kind: str
    host: str
    port: int
    login: int = 0
    password: str = ""

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"


def parse_server(name: str, url: str) -> ServerConfig:
    """One ``name=url`` entry."""
    parts = urlsplit(url.strip())
    if parts.scheme not in KINDS:
        raise ValidationError(
            f"Platform server {name!r}: scheme must be one of {', '.join(KINDS)}.",
            code="bad_platform_url",
            field="PLATFORM_SERVERS",
        )
    if not parts.hostname or not parts.port:
        raise ValidationError(
            f"Platform server {name!r}: the URL needs host and port.",
            code="bad_platform_url",
            field="PLATFORM_SERVERS",
        )
    password = os.environ.get(f"PLATFORM_SERVER_{name.upper()}_PASSWORD", parts.password or "")
    return ServerConfig(
        name=name,
        kind=parts.scheme,
        host=parts.hostname,
        port=parts.port,
        login=int(parts.username or 0),
        password=password,
    )


def platform_servers() -> dict[str, ServerConfig]:
    """Every configured server by name."""
    configured = getattr(settings, "PLATFORM_SERVERS", None)
    pairs: list[tuple[str, str]]
    if isinstance(configured, dict):
        pairs = [(str(k), str(v)) for k, v in configured.items()]
    else:
        spec = configured or os.environ.get("PLATFORM_SERVERS") or DEFAULT_SERVERS
        pairs = []
        for item in (part.strip() for part in str(spec).split(",")):
            if item:
                name, _, url = item.partition("=")
                pairs.append((name, url))
    servers: dict[str, ServerConfig] = {}
    for name, url in pairs:
        servers[name.strip()] = parse_server(name.strip(), url)
    return servers


def build_adapter(config: ServerConfig) -> PlatformPort:
    """The adapter for a configured server (MT5/MT4 import their Windows DLLs on connect)."""
    if config.kind == "simulator":
        from brokerdesk.trading.platform.simulator_adapter import SimulatorAdapter

        return SimulatorAdapter(config.name, config.host, config.port, password=config.password)
    if config.kind == "mt5":
        from brokerdesk.trading.platform.mt5_adapter import MT5Adapter

        return MT5Adapter(config.name, config.address, config.login, config.password)
    from brokerdesk.trading.platform.mt4_adapter import MT4Adapter

    return MT4Adapter(config.name, config.address, config.login, config.password)
