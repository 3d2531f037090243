"""Credentials for upstream calls: OAuth2 client-credentials tokens and the legacy ZIA session.

A credential hands out request headers and is told when the upstream rejected them:

- :class:`ClientCredentials`: a bearer token (Mimecast API 2.0, ZIA OAuth via a third-party IdP,
  ZIA OneAPI via ZIdentity), cached in memory until ``leeway`` seconds before ``expires_in``.
  Tokens are secrets: they live in this object only, never in Redis or a log line.
- :class:`LegacySession`: ZIA's obfuscated-API-key login and its ``JSESSIONID`` cookie, renewed
  before it idles out (5 minutes on ZIA's side).

Token-endpoint failures are classified per docs/design.md#error-policy: 400/401/403
(``invalid_client``, a bad secret, ``invalid_scope``) are permanent ``*_auth`` errors; 429, 5xx,
non-JSON bodies and network failures are temporary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import httpx2 as httpx
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import OAuth2Client
from pydantic import SecretStr

from threatshare.errors import (
    AuthError,
    RateLimited,
    ThreatshareError,
    UpstreamUnavailable,
)
from threatshare.http import (
    DEFAULT_TIMEOUT,
    USER_AGENT,
    parse_retry_after,
    read_json,
    transport_error,
    url_problem,
)
from threatshare.http_limits import bounded
from threatshare.scrub import NO_SECRETS, Scrubber

Clock = Callable[[], float]


class Credential(Protocol):
    """What the API clients need from any kind of credential."""

    def headers(self) -> dict[str, str]:
        """Headers that authenticate one request; fetches a token or logs in when needed."""
        ...

    def invalidate(self) -> None:
        """Forget the current token or session (the upstream answered 401)."""
        ...

    def used(self) -> None:
        """A request with these headers succeeded (keeps an idle session alive)."""
        ...


def _error_field(body: Any, *names: str) -> str:
    if isinstance(body, dict):
        for name in names:
            value = body.get(name)
            if isinstance(value, str) and value:
                return value[:200]
    return ""


def classify_token_response(
    response: httpx.Response, code: str, what: str, scrub: Scrubber = NO_SECRETS
) -> None:
    """Raise the right error for a failed token or login response; return on 2xx. The
    upstream's own words go through ``scrub``: a token endpoint may quote the secret it
    refused."""
    status = response.status_code
    if 200 <= status < 300:
        return
    if status == 429:
        raise RateLimited(
            f"{what}: rate limited (HTTP 429)",
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    if status >= 500:
        raise UpstreamUnavailable(f"{what}: HTTP {status}")
    try:
        body = response.json()
    except ValueError:
        body = None
    clean = scrub.for_answer(response)
    reason = clean(_error_field(body, "error", "code"), 80) or f"HTTP {status}"
    detail = clean(_error_field(body, "error_description", "message"), 200)
    message = f"{what} refused the credentials: {reason}" + (f" ({detail})" if detail else "")
    raise AuthError(message, code=code)


class ClientCredentials:
    """An OAuth2 client-credentials token, fetched on demand and cached until near expiry."""

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        client_secret: SecretStr,
        error_code: str,
        what: str,
        auth_method: str = "client_secret_post",
        scope: str | None = None,
        audience: str | None = None,
        leeway: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        clock: Clock = time.monotonic,
        scrub: Scrubber = NO_SECRETS,
    ) -> None:
        if problem := url_problem(token_url):
            raise ValueError(f"token URL {problem}")
        self._token_url = token_url
        self._error_code = error_code
        self._what = what
        self._audience = audience
        self._leeway = leeway
        self._clock = clock
        self._scrub = scrub.with_secrets([client_secret.get_secret_value()])
        self._client = OAuth2Client(
            client_id=client_id,
            client_secret=client_secret.get_secret_value(),
            token_endpoint_auth_method=auth_method,
            scope=scope,
            timeout=DEFAULT_TIMEOUT,
            transport=bounded(transport),
            verify=True,
            trust_env=False,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )
        self._client.register_compliance_hook("access_token_response", self._check_response)
        self._token: str | None = None
        self._expires_at = 0.0
        #: How many tokens were fetched (tests and the bench count them).
        self.fetches = 0

    def _check_response(self, response: httpx.Response) -> httpx.Response:
        classify_token_response(response, self._error_code, self._what, self._scrub)
        return response

    def _fetch(self) -> None:
        extra = {"audience": self._audience} if self._audience else {}
        try:
            token = self._client.fetch_token(
                self._token_url, grant_type="client_credentials", **extra
            )
        except ThreatshareError:
            raise
        except httpx.TransportError as exc:
            raise transport_error(exc, self._what) from None
        except httpx.HTTPStatusError as exc:
            raise UpstreamUnavailable(f"{self._what}: HTTP {exc.response.status_code}") from None
        except OAuthError as exc:
            raise AuthError(
                f"{self._what} refused the credentials: {self._scrub(exc.error, 80)}",
                code=self._error_code,
            ) from None
        except ValueError:
            raise UpstreamUnavailable(f"{self._what}: answer is not a JSON object") from None
        access = token.get("access_token")
        if not isinstance(access, str) or not access:
            raise UpstreamUnavailable(f"{self._what}: answer has no access_token")
        try:
            lifetime = float(token.get("expires_in") or 300)
        except (TypeError, ValueError):
            lifetime = 300.0
        self.fetches += 1
        self._token = access
        # A token shorter-lived than twice the leeway is used for half its life.
        self._expires_at = self._clock() + max(lifetime - self._leeway, lifetime / 2)

    def headers(self) -> dict[str, str]:
        if self._token is None or self._clock() >= self._expires_at:
            self._fetch()
        return {"Authorization": f"Bearer {self._token}"}

    def invalidate(self) -> None:
        self._token = None

    def used(self) -> None:
        pass

    def close(self) -> None:
        self._client.close()


def obfuscate_api_key(api_key: str, now_ms: int) -> str:
    """ZIA's legacy API-key obfuscation for ``POST /authenticatedSession``
    (docs/design.md#pushing-to-zia)."""
    seed = str(now_ms)[-6:]
    shifted = str(int(seed) >> 1).zfill(6)
    return "".join(api_key[int(d)] for d in seed) + "".join(api_key[int(d) + 2] for d in shifted)


class LegacySession:
    """A ZIA admin session from the obfuscated API key, renewed before ZIA idles it out."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        api_key: SecretStr,
        username: str,
        password: SecretStr,
        idle: float = 270.0,
        clock: Clock = time.monotonic,
        wall_clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        scrub: Scrubber = NO_SECRETS,
    ) -> None:
        self._http = client
        self._scrub = scrub.with_secrets([api_key.get_secret_value(), password.get_secret_value()])
        self._api_key = api_key
        self._username = username
        self._password = password
        self._idle = idle
        self._clock = clock
        self._wall_clock_ms = wall_clock_ms
        self._session: str | None = None
        self._last_used = 0.0
        #: How many logins happened (tests count renewals).
        self.logins = 0

    def _login(self) -> None:
        now_ms = self._wall_clock_ms()
        body = {
            "apiKey": obfuscate_api_key(self._api_key.get_secret_value(), now_ms),
            "username": self._username,
            "password": self._password.get_secret_value(),
            "timestamp": str(now_ms),
        }
        try:
            response = self._http.post("/authenticatedSession", json=body)
        except httpx.TransportError as exc:
            raise transport_error(exc, "ZIA login") from None
        classify_token_response(response, "zia_auth", "ZIA login", self._scrub)
        read_json(response, "ZIA login")
        session = response.cookies.get("JSESSIONID")
        if not session:
            raise UpstreamUnavailable("ZIA login: no JSESSIONID cookie in the answer")
        self.logins += 1
        self._session = session
        self._last_used = self._clock()

    def headers(self) -> dict[str, str]:
        if self._session is None or self._clock() - self._last_used >= self._idle:
            self._login()
        return {"Cookie": f"JSESSIONID={self._session}"}

    def invalidate(self) -> None:
        self._session = None

    def used(self) -> None:
        self._last_used = self._clock()

    def close(self) -> None:
        """Close the connection the logins go through."""
        self._http.close()
