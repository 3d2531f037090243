"""The endpoints of the emulated ZIA API, under both ``/api/v1`` (legacy and ZIA-native OAuth)
and ``/zia/api/v1`` (OneAPI), and which one a request addresses."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

PREFIXES = ("/zia/api/v1", "/api/v1")
METHODS = {
    "/urlCategories": ("GET", "POST"),
    "/urlCategories/lite": ("GET",),
    "/urlCategories/urlQuota": ("GET",),
    "/urlCategories/{id}": ("GET", "PUT", "DELETE"),
    "/status": ("GET",),
    "/status/activate": ("POST",),
    "/authenticatedSession": ("GET", "POST", "DELETE"),
}
SESSION = "/authenticatedSession"


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # without the API prefix
    template: str | None  # None: no such endpoint
    category_id: str | None = None

    @property
    def bucket(self) -> str:
        return f"{self.method} {self.template or self.path}"


def resolve(method: str, path: str) -> Route:
    """The endpoint a request addresses."""
    rest = next((path[len(p) :] for p in PREFIXES if path.startswith(p + "/")), None)
    if rest is None:
        return Route(method, path, None)
    rest = rest.rstrip("/")
    if rest in METHODS:
        return Route(method, rest, rest)
    parts = rest.split("/")
    if len(parts) == 3 and parts[1] == "urlCategories" and parts[2]:
        return Route(method, rest, "/urlCategories/{id}", unquote(parts[2]))
    return Route(method, rest, None)
