"""ZIA's legacy admin login: the obfuscated API key and the ``JSESSIONID`` session
(docs/design.md#pushing-to-zia).

``POST /authenticatedSession`` carries ``apiKey`` (12 characters derived from the real key and
the timestamp), ``username``, ``password`` and ``timestamp`` (epoch milliseconds). The server
knows the real key, so it recomputes the obfuscation from the timestamp and compares; the
timestamp must be within two hours of server time. A session idles out after ``idle`` seconds
without a call, after which calls get 401 ``SESSION_NOT_VALID``.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from http.cookies import CookieError, SimpleCookie
from typing import Any

from threatshare.sandbox.zia_categories import Refused

#: How far the login timestamp may be from server time.
TIMESTAMP_TOLERANCE_MS = 2 * 3600 * 1000
SESSION_INFO = {
    "authType": "ADMIN_LOGIN",
    "obfuscateApiKey": True,
    "passwordExpiryTime": 0,
    "passwordExpiryDays": 0,
}


def expected_obfuscation(api_key: str, timestamp: str) -> str:
    """The ``apiKey`` a client must send with ``timestamp`` (the server's side of
    docs/design.md#pushing-to-zia)."""
    digits = timestamp[-6:]
    halved = f"{int(digits) >> 1:06d}"
    first = [api_key[int(d)] for d in digits]
    second = [api_key[int(d) + 2] for d in halved]
    return "".join(first + second)


def session_cookie(cookie_header: str | None) -> str | None:
    """The ``JSESSIONID`` of a ``Cookie`` header, if any."""
    if not cookie_header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(cookie_header)
    except CookieError:
        return None
    morsel = jar.get("JSESSIONID")
    return morsel.value if morsel else None


class LegacySessions:
    """Logins with the tenant's API key and one admin's credentials, and their sessions."""

    def __init__(
        self,
        *,
        api_key: str | None,
        username: str | None,
        password: str | None,
        idle: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._api_key = api_key
        self._username = username
        self._password = password
        self.idle = idle
        self._clock = clock
        self._wall_clock_ms = wall_clock_ms
        self._last_used: dict[str, float] = {}
        #: Logins accepted so far.
        self.logins = 0

    @property
    def enabled(self) -> bool:
        return self._api_key is not None

    def login(self, body: Any) -> str:
        """A new session id for a correct login body; :class:`Refused` otherwise."""
        if not isinstance(body, dict):
            raise Refused(400, "Request body is invalid.")
        fields = [body.get(k) for k in ("apiKey", "username", "password", "timestamp")]
        if not all(isinstance(f, str) for f in fields):
            raise Refused(400, "Request body is invalid.")
        api_key, username, password, timestamp = fields
        if not self._accepts(api_key, username, password, timestamp):
            raise Refused(400, "Invalid email or password", "INVALID_USERNAME_OR_PASSWORD")
        session = secrets.token_hex(16).upper()
        self._last_used[session] = self._clock()
        self.logins += 1
        return session

    def _accepts(self, api_key: str, username: str, password: str, timestamp: str) -> bool:
        if self._api_key is None or self._username is None or self._password is None:
            return False
        if not timestamp.isdigit() or len(timestamp) < 6:
            return False
        if abs(int(timestamp) - self._wall_clock_ms()) > TIMESTAMP_TOLERANCE_MS:
            return False
        if len(self._api_key) < 12:
            return False
        expected = expected_obfuscation(self._api_key, timestamp)
        checks = (
            hmac.compare_digest(api_key.encode(), expected.encode()),
            hmac.compare_digest(username.encode(), self._username.encode()),
            hmac.compare_digest(password.encode(), self._password.encode()),
        )
        return all(checks)

    def touch(self, session: str | None) -> bool:
        """True, and the idle timer restarts, when ``session`` is live; an idle one is ended."""
        if session is None or session not in self._last_used:
            return False
        now = self._clock()
        if now - self._last_used[session] >= self.idle:
            del self._last_used[session]
            return False
        self._last_used[session] = now
        return True

    def end(self, session: str | None) -> bool:
        """End a live session; False when there was none."""
        live = self.touch(session)
        if live and session is not None:
            del self._last_used[session]
        return live

    def owns(self, session: str | None, username: object) -> bool:
        """Whether a request belongs to this tenant: its session cookie was issued here, or
        its login names this tenant's admin (one API host serves many organisations)."""
        if session is not None and session in self._last_used:
            return True
        return self._username is not None and username == self._username

    def expire_all(self) -> None:
        """Forget every session (as if each had idled out)."""
        self._last_used.clear()
