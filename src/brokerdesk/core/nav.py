"""Navigation registry: each module adds its own pages to the menus of the three surfaces.

A module calls ``register_nav`` from its ``AppConfig.ready``; the base template shows the
entries of the current surface that the signed-in user may open (staff entries by role).
No module edits another's template to appear in a menu.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.urls import NoReverseMatch, reverse

SURFACE_NAMES = frozenset({"portal", "partners", "backoffice"})


@dataclass(frozen=True)
class NavItem:
    """One menu entry: a lazily translated label and a URL name on one surface."""

    surface: str
    label: Any  # a lazy translation (gettext_lazy), rendered per request
    url_name: str
    order: int = 100
    roles: frozenset[str] = field(default_factory=frozenset)  # staff roles; empty = any

    @property
    def url(self) -> str:
        """The entry's path ("" when its URL is not installed)."""
        try:
            return reverse(self.url_name)
        except NoReverseMatch:
            return ""


_ITEMS: dict[tuple[str, str], NavItem] = {}


def register_nav(
    surface: str, label: Any, url_name: str, *, order: int = 100, roles: Iterable[str] = ()
) -> None:
    """Add (or replace) the menu entry ``url_name`` on ``surface``."""
    if surface not in SURFACE_NAMES:
        raise ValueError(f"unknown surface {surface!r}; one of {sorted(SURFACE_NAMES)}")
    _ITEMS[(surface, url_name)] = NavItem(
        surface, label, url_name, order, frozenset(str(r) for r in roles)
    )


def nav_items(surface: str, held_roles: frozenset[str]) -> list[NavItem]:
    """The entries of ``surface`` visible to a user holding ``held_roles``, in menu order."""
    visible = [
        item
        for (name, _), item in _ITEMS.items()
        if name == surface
        and (not item.roles or "admin" in held_roles or item.roles & held_roles)
        and item.url
    ]
    return sorted(visible, key=lambda item: (item.order, str(item.label)))


@dataclass(frozen=True)
class NavLink:
    """A menu entry as one request shows it."""

    label: Any
    url: str
    current: bool


def nav_links(surface: str, held_roles: frozenset[str], path: str) -> list[NavLink]:
    """The visible entries of ``surface`` with the one ``path`` is under marked current.

    The longest entry URL that ``path`` starts with wins; the surface's start page (such as
    ``/backoffice/``) is current only on itself, not on every page below it.
    """
    items = [(item, item.url) for item in nav_items(surface, held_roles)]

    def under(url: str) -> bool:
        return path == url or (path.startswith(url) and url.rstrip("/").count("/") > 1)

    best = max((len(url) for _, url in items if under(url)), default=-1)
    return [NavLink(item.label, url, len(url) == best and under(url)) for item, url in items]
