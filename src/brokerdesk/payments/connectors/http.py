"""The one HTTP call the API-driven connectors make, behind a swappable transport.

Connectors take a ``Transport`` so tests replace the network with a fake provider while
every byte of the request is still built and every byte of the answer still parsed by the
connector's real code.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Mapping

from brokerdesk.payments.connectors.base import ProviderError

# (method, url, headers, body) -> (status, body)
Transport = Callable[[str, str, Mapping[str, str], bytes | None], tuple[int, bytes]]


def urllib_transport(
    method: str, url: str, headers: Mapping[str, str], body: bytes | None
) -> tuple[int, bytes]:
    """Send one request with urllib (10 s timeout); HTTP errors come back as their status."""
    request = urllib.request.Request(  # noqa: S310 (configured https URL of the provider)
        url, data=body, headers=dict(headers), method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except OSError as exc:
        raise ProviderError(
            f"The provider is unreachable ({type(exc).__name__}).", field="provider"
        ) from None
