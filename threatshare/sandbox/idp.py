"""An OAuth2 authorization server that issues client-credentials tokens, on loopback.

It stands in for the identity providers of ZIA (docs/design.md#pushing-to-zia): the third-party IdP
of ZIA's "OAuth 2.0 Authorization Servers" (Okta, Entra, PingFederate: a ``scope`` of the form
``<cloud>::<orgId>::<role>``) and ZIdentity for OneAPI (``audience=https://api.zscaler.com``).

``POST .../token`` takes a form-encoded ``grant_type=client_credentials`` with the client
authenticated by ``client_secret_post`` (id and secret in the body) or ``client_secret_basic``
(HTTP Basic), as RFC 6749 §2.3.1 and §5 describe. Tokens are opaque random strings; the ZIA
emulator checks them in-process through :meth:`IdpEmulator.validate` instead of fetching JWKS.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from threatshare.sandbox.server import Request, Response, json_response, sleep_latency

#: Failures the token endpoint can be told to answer with (temporary ones, per
#: docs/design.md#error-policy).
FAILURE_KINDS = frozenset({"429", "500", "503", "drop", "html"})

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass
class _Client:
    secret: str
    scope: str | None
    audience: str | None


class _OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str, **headers: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.headers = headers

    def response(self) -> Response:
        body = {"error": self.error, "error_description": self.description}
        return json_response(self.status, body, **_NO_STORE, **self.headers)


class IdpEmulator:
    """An OAuth2 token endpoint for registered clients; an app for ``EmulatorServer``."""

    def __init__(self, *, token_lifetime: int = 3600) -> None:
        self.token_lifetime = token_lifetime
        #: Seconds every answer is delayed by.
        self.latency = 0.0
        #: How many requests reached the token endpoint, answered or refused.
        self.token_requests = 0
        self._lock = threading.Lock()
        self._clients: dict[str, _Client] = {}
        self._tokens: dict[str, dict[str, Any]] = {}
        self._failures: list[list[Any]] = []

    # -- administration ---------------------------------------------------------------------

    def add_client(
        self,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        audience: str | None = None,
    ) -> None:
        """Register a client. ``scope``: the scopes it may ask for (space-separated; when set,
        a token request must name one or more of them). ``audience``: the audience it must ask
        for (ZIdentity requires ``https://api.zscaler.com``)."""
        with self._lock:
            self._clients[client_id] = _Client(client_secret, scope, audience)

    def rotate_secret(self, client_id: str, new_secret: str) -> None:
        """Replace a client's secret; tokens already issued stay valid until they expire."""
        with self._lock:
            self._clients[client_id].secret = new_secret

    def revoke(self, client_id: str) -> None:
        """Disable a client: its token requests fail and its issued tokens stop being valid."""
        with self._lock:
            self._clients.pop(client_id, None)
            for token in [t for t, c in self._tokens.items() if c["client_id"] == client_id]:
                del self._tokens[token]

    def expire_tokens(self) -> None:
        """Make every token issued so far expired (as if its lifetime had passed)."""
        past = time.time() - 1
        with self._lock:
            for claims in self._tokens.values():
                claims["exp"] = min(claims["exp"], past)

    def fail_next(self, kind: str, count: int = 1) -> None:
        """Answer the next ``count`` token requests with a temporary failure: ``"429"``,
        ``"500"``, ``"503"``, ``"drop"`` (connection closed mid-response) or ``"html"`` (a
        proxy's non-JSON error page)."""
        if kind not in FAILURE_KINDS:
            raise ValueError(f"unknown failure kind {kind!r}")
        with self._lock:
            self._failures.append([kind, count])

    def validate(self, token: str) -> dict[str, Any] | None:
        """The claims of a valid, unexpired token of a registered client, else None."""
        with self._lock:
            claims = self._tokens.get(token)
            if claims is None or claims["exp"] <= time.time():
                return None
            return dict(claims)

    # -- HTTP ---------------------------------------------------------------------------------

    def __call__(self, request: Request) -> Response:
        sleep_latency(self.latency)
        if not request.path.endswith("/token"):
            return json_response(404, {"error": "not_found", "error_description": "no such path"})
        with self._lock:
            self.token_requests += 1
            if failure := self._take_failure():
                return failure
            try:
                return self._issue(request)
            except _OAuthError as refusal:
                return refusal.response()

    def _take_failure(self) -> Response | None:
        if not self._failures:
            return None
        entry = self._failures[0]
        entry[1] -= 1
        if entry[1] <= 0:
            self._failures.pop(0)
        kind = entry[0]
        if kind == "429":
            body = {"error": "rate_limited", "error_description": "Too many requests"}
            return json_response(429, body, **{"Retry-After": "1"})
        if kind == "html":
            html = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            return Response(502, html, {"Content-Type": "text/html"})
        if kind == "drop":
            return Response(200, {"access_token": "x" * 64, "token_type": "Bearer"}, drop=True)
        body = {"error": "temporarily_unavailable", "error_description": f"HTTP {kind}"}
        return json_response(int(kind), body)

    def _issue(self, request: Request) -> Response:
        if request.method != "POST":
            raise _OAuthError(405, "invalid_request", "the token endpoint accepts POST only")
        content_type = request.headers.get("Content-Type", "")
        if not content_type.startswith("application/x-www-form-urlencoded"):
            raise _OAuthError(
                400, "invalid_request", "the body must be application/x-www-form-urlencoded"
            )
        form = request.form()
        grant_type = form.get("grant_type")
        if not grant_type:
            raise _OAuthError(400, "invalid_request", "grant_type is missing")
        if grant_type != "client_credentials":
            raise _OAuthError(400, "unsupported_grant_type", f"{grant_type} is not supported")
        client_id, client = self._authenticate(request, form)
        scope = self._granted_scope(client, form.get("scope"))
        audience = self._granted_audience(client, form.get("audience"))
        token = secrets.token_urlsafe(32)
        self._tokens[token] = {
            "client_id": client_id,
            "scope": scope,
            "aud": audience,
            "exp": time.time() + self.token_lifetime,
        }
        body: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
        }
        if scope:
            body["scope"] = scope
        return json_response(200, body, **_NO_STORE)

    def _authenticate(self, request: Request, form: dict[str, str]) -> tuple[str, _Client]:
        header = request.headers.get("Authorization", "")
        basic = header[:6].lower() == "basic "
        if basic:
            if "client_secret" in form:
                # RFC 6749 §2.3: a client must not use more than one authentication method.
                raise _OAuthError(400, "invalid_request", "more than one client authentication")
            client_id, secret = _decode_basic(header[6:])
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        client = self._clients.get(client_id)
        if (
            not client_id
            or client is None
            or not hmac.compare_digest(client.secret.encode(), secret.encode())
        ):
            challenge = {"WWW-Authenticate": 'Basic realm="token"'} if basic else {}
            raise _OAuthError(401, "invalid_client", "client authentication failed", **challenge)
        return client_id, client

    @staticmethod
    def _granted_scope(client: _Client, requested: str | None) -> str:
        if client.scope is None:
            return requested or ""
        if not requested:
            raise _OAuthError(400, "invalid_scope", "a scope is required for this client")
        allowed = set(client.scope.split())
        if not set(requested.split()) <= allowed:
            raise _OAuthError(400, "invalid_scope", "the requested scope is not allowed")
        return requested

    @staticmethod
    def _granted_audience(client: _Client, requested: str | None) -> str | None:
        if client.audience is None:
            return requested
        if requested != client.audience:
            raise _OAuthError(400, "invalid_request", "audience is missing or not allowed")
        return requested


def _decode_basic(encoded: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise _OAuthError(401, "invalid_client", "malformed Basic credentials") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise _OAuthError(401, "invalid_client", "malformed Basic credentials")
    return unquote_plus(client_id), unquote_plus(secret)
