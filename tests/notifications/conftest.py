"""Fixtures for the notifications tests: a real SMTP server, people with logins, the bus."""

from __future__ import annotations

import email
import email.policy
import itertools
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import date
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from django.contrib.auth import get_user_model

from brokerdesk.clients import services as clients
from brokerdesk.compliance import services as compliance
from brokerdesk.core.bus.factory import get_bus
from brokerdesk.core.consumers import ConsumerRunner, autodiscover
from brokerdesk.core.events import DomainEvent, emit
from brokerdesk.core.relay import relay_all
from brokerdesk.partners import hierarchy
from tests.automations.conftest import stand_in

_seq = itertools.count(1)

__all__ = ["Inbox", "Pipeline", "ib_with_login", "person", "stand_in"]


@pytest.fixture(autouse=True)
def bundled_rule_sets(request: pytest.FixtureRequest) -> None:
    """The bundled rule sets (a flush between tests may have removed them)."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None:
        return
    request.getfixturevalue("transactional_db" if marker.kwargs.get("transaction") else "db")
    compliance.load_bundled_rule_sets()


class Inbox:
    """What a local SMTP server received (aiosmtpd's handler protocol)."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(parsed)  # type: ignore[arg-type]
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        """The messages whose envelope went to ``address``."""
        with self.lock:
            return [
                m
                for m, (_f, rcpt) in zip(self.messages, self.envelopes, strict=True)
                if address in rcpt
            ]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp(settings: Any) -> Iterator[Inbox]:
    """A real SMTP server on an ephemeral port; Django's SMTP backend pointed at it."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    try:
        yield inbox
    finally:
        controller.stop()


def person(*, language: str = "", country: str = "CY", **kw: Any) -> Any:
    """A client with a portal login (its ``user`` attribute)."""
    n = next(_seq)
    address = kw.pop("email", f"reader{n}-{uuid.uuid4().hex[:6]}@example.com")
    user = get_user_model().objects.create_user(
        username=f"reader{n}-{uuid.uuid4().hex[:6]}", email=address, password=None
    )
    client = clients.register_individual(
        email=address,
        first_name=kw.pop("first_name", "Elena"),
        last_name=f"Reader{n}",
        date_of_birth=date(1988, 6, 1),
        country=country,
        jurisdiction="cysec",
        phone="+357 22 123456",
        user=user,
        by="system:test",
    )
    if language:
        from brokerdesk.notifications import services

        services.set_preferences(user_id=user.pk, language=language, channels={})
    client.user = user
    return client


def ib_with_login() -> tuple[Any, Any]:
    """An IB and the user it signs in as."""
    n = next(_seq)
    user = get_user_model().objects.create_user(
        username=f"partner{n}-{uuid.uuid4().hex[:6]}",
        email=f"partner{n}-{uuid.uuid4().hex[:6]}@example.com",
        password=None,
        first_name="Petros",
    )
    ib = hierarchy.create_ib(
        code=f"ibn{n}-{uuid.uuid4().hex[:6]}", name=f"IB {n}", by="system:test", user_id=user.pk
    )
    return ib, user


class Pipeline:
    """The real event path: outbox → relay → bus → the notifications consumer."""

    def __init__(self) -> None:
        self.bus = get_bus(prefix=f"t{uuid.uuid4().hex[:8]}")
        self.runner = ConsumerRunner(self.bus, autodiscover()["notifications.from_events"])

    def send(self, *events: DomainEvent) -> int:
        """Emit ``events`` and let the consumer handle them; return how many it processed."""
        emit(*events)
        relay_all(self.bus)
        return self.runner.drain().processed


@pytest.fixture
def pipeline() -> Pipeline:
    """A pipeline on the configured bus under a fresh stream prefix."""
    return Pipeline()
