"""Events the clients module emits."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from brokerdesk.core.events import DomainEvent


@dataclass(frozen=True)
class ClientRegistered(DomainEvent):
    """A client registered (v1)."""

    type = "client.registered"
    stream = "clients"
    version = 1

    client_id: UUID
    kind: str
    country: str
    jurisdiction: str
    email: str

    def aggregate_id(self) -> str:
        return str(self.client_id)


@dataclass(frozen=True)
class ClientUpdated(DomainEvent):
    """Contact data of a client changed (v1): the names of the changed fields."""

    type = "client.updated"
    stream = "clients"
    version = 1

    client_id: UUID
    fields: tuple[str, ...]

    def aggregate_id(self) -> str:
        return str(self.client_id)


@dataclass(frozen=True)
class PlatformLoginLinked(DomainEvent):
    """A platform login was linked to a client (v1)."""

    type = "client.login_linked"
    stream = "clients"
    version = 1

    client_id: UUID
    platform: str
    server: str
    login: int
    currency: str
    is_live: bool
    trading_account_id: UUID | None

    def aggregate_id(self) -> str:
        return str(self.client_id)
