"""The HTTP layer: one client factory and one retry policy for every outbound call.

The client factory enforces docs/design.md#security: HTTPS only (plain HTTP to a loopback host is
allowed, for the sandbox and tests), certificate verification always on, a timeout on every request.
The retry policy retries only :class:`~threatshare.errors.TemporaryError` (never a permanent error,
never a :class:`~threatshare.errors.Signal`, never RQ's job-timeout exception), waits what the
server asked for when it asked, otherwise backs off
exponentially with jitter, and never sleeps past the run's deadline.
"""

from __future__ import annotations

import dataclasses
import email.utils
import ipaddress
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx2 as httpx
import structlog
import tenacity
from tenacity import RetryCallState

from threatshare.errors import NetworkError, TemporaryError, UpstreamUnavailable
from threatshare.http_limits import bounded

T = TypeVar("T")

log = structlog.get_logger(__name__)

#: Connect, read, write and pool timeouts for every request, in seconds.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
#: A server may ask for a long wait; we never wait longer than this for one retry.
MAX_SERVER_WAIT = 300.0
USER_AGENT = "threatshare/0.1"


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals: the only hosts plain HTTP may reach."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True  # a name under .localhost may resolve anywhere: not loopback here
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_problem(url: str) -> str | None:
    """Why ``url`` may not be used as an upstream address, or None when it may
    (docs/design.md#configuration, docs/design.md#security)."""
    try:
        parsed = httpx.URL(url)
    except Exception:  # httpx raises several types for malformed URLs
        return "is not a valid URL"
    if not parsed.host:
        return "has no host"
    if parsed.userinfo:
        return "must not carry a user name or password (put credentials in their own keys)"
    if parsed.scheme == "https":
        return None
    if parsed.scheme == "http" and is_loopback_host(parsed.host):
        return None
    return "must use https:// (plain http:// only to a loopback host)"


def make_client(
    base_url: str = "",
    *,
    timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
    transport: httpx.BaseTransport | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Client:
    """An HTTP client for one upstream, with TLS verification on, timeouts everywhere and every
    answer's body capped (:mod:`threatshare.http_limits`)."""
    if base_url and (problem := url_problem(base_url)):
        raise ValueError(f"upstream URL {base_url!r} {problem}")
    all_headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    all_headers.update(headers or {})
    return httpx.Client(
        base_url=base_url,
        timeout=timeout,
        verify=True,
        transport=bounded(transport),
        headers=all_headers,
        follow_redirects=False,
        trust_env=False,  # no proxy or netrc from the environment picks up our credentials
    )


@dataclass(frozen=True)
class Deadline:
    """An absolute point in (monotonic) time by which a run must be over. ``clock`` is the
    caller's (a test or bench drives it without sleeping)."""

    at: float
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)

    @classmethod
    def after(cls, seconds: float, clock: Callable[[], float] = time.monotonic) -> Deadline:
        return cls(clock() + seconds, clock)

    def remaining(self) -> float:
        return max(0.0, self.at - self.clock())

    @property
    def expired(self) -> bool:
        return self.clock() >= self.at


_SECONDS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:s|sec|secs|second|seconds)?\s*$", re.IGNORECASE)


def parse_retry_after(value: object) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: ``"5"``, ``"5 seconds"``, ``"5s"`` or an
    HTTP date. ``None`` when it cannot be read. ZIA sends ``"0 seconds"``, which still means
    "wait a moment": the result is at least one second."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return max(1.0, float(value))
    text = str(value)
    if match := _SECONDS.match(text):
        return max(1.0, float(match.group(1)))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(1.0, (when - datetime.now(UTC)).total_seconds())


#: What an operator reads for a failed connection, by the words of the system's own error.
_NETWORK_CAUSES = (
    ("refused", "connection refused"),
    ("name or service not known", "host name not found"),
    ("nodename nor servname", "host name not found"),
    ("temporary failure in name resolution", "host name not resolved (DNS)"),
    ("no address associated", "host name not found"),
    ("network is unreachable", "network unreachable"),
    ("no route to host", "no route to host"),
    ("reset by peer", "connection reset"),
    ("certificate", "TLS certificate refused"),
    ("ssl", "TLS handshake failed"),
)
_NETWORK_KINDS: tuple[tuple[type[httpx.TransportError], str], ...] = (
    (httpx.ConnectTimeout, "no connection in time (connect timeout)"),
    (httpx.ReadTimeout, "no answer in time (read timeout)"),
    (httpx.WriteTimeout, "request not sent in time (write timeout)"),
    (httpx.PoolTimeout, "no free connection in time (pool timeout)"),
    (httpx.RemoteProtocolError, "connection closed mid-answer"),
)


def _failed_host(exc: httpx.TransportError) -> str:
    """The host (and port, when not the scheme's own) a failed request was for."""
    try:
        url = exc.request.url
    except RuntimeError:  # an error raised outside a request carries none
        return "unknown host"
    return f"{url.host}:{url.port}" if url.port else url.host


def network_cause(exc: httpx.TransportError) -> str:
    """A few words on why a connection, read or write failed; never text an upstream sent."""
    for kind, cause in _NETWORK_KINDS:
        if isinstance(exc, kind):
            return cause
    text = str(exc).lower()
    for words, cause in _NETWORK_CAUSES:
        if words in text:
            return cause
    return type(exc).__name__


def transport_error(exc: httpx.TransportError, what: str) -> NetworkError:
    """A temporary ``network`` error for a failed connection, read or write, naming the host:
    ``network: api.services.mimecast.com: connection refused (Mimecast token endpoint)``."""
    return NetworkError(f"{_failed_host(exc)}: {network_cause(exc)} ({what})")


def read_json(response: httpx.Response, what: str) -> Any:
    """The JSON body of ``response``; a non-JSON body is a temporary error (a proxy's error
    page, a truncated answer). The body's size was capped as it was read."""
    try:
        return response.json()
    except ValueError:
        raise UpstreamUnavailable(
            f"{what}: HTTP {response.status_code} with a body that is not JSON"
        ) from None


@dataclass(frozen=True)
class RetryPolicy:
    """How temporary errors are retried inside a run (docs/design.md#error-policy)."""

    max_attempts: int = 8
    initial_wait: float = 1.0
    max_wait: float = 60.0
    jitter: float = 1.0
    #: Past this point a network error is no longer retried: an interactive command gives up
    #: on an unreachable host within seconds (docs/design.md#command-line), while its run may
    #: still use its whole deadline on work that progresses. None: retried as any other.
    network_give_up: Deadline | None = None

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        server_wait = getattr(exc, "retry_after", None)
        if server_wait is not None:
            return min(float(server_wait), MAX_SERVER_WAIT)
        backoff = tenacity.wait_exponential_jitter(
            multiplier=self.initial_wait, max=self.max_wait, jitter=self.jitter
        )
        return float(backoff(state))

    def attempts(self, deadline: Deadline, what: str) -> Iterator[tenacity.AttemptManager]:
        """Attempts for ``what``; use as ``for attempt in policy.attempts(...): with attempt:``.

        The last error is re-raised as itself when attempts run out or the next wait would cross
        the deadline, so callers catch threatshare errors, never ``tenacity.RetryError``."""

        def past_deadline(state: RetryCallState) -> bool:
            upcoming = state.upcoming_sleep or 0.0
            give_up = self.network_give_up
            exc = state.outcome.exception() if state.outcome else None
            if give_up is not None and isinstance(exc, NetworkError):
                return upcoming >= min(deadline.remaining(), give_up.remaining())
            return upcoming >= deadline.remaining()

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "retrying",
                call=what,
                attempt=state.attempt_number,
                wait_s=round(state.upcoming_sleep, 2),
                code=getattr(exc, "code", type(exc).__name__),
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TemporaryError),
            wait=self._wait,
            stop=tenacity.stop_after_attempt(self.max_attempts) | past_deadline,
            before_sleep=before_sleep,
            reraise=True,
        )
        return iter(retrying)

    def call(self, deadline: Deadline, what: str, fn: Callable[[], T]) -> T:
        """``fn()`` with temporary errors retried under this policy."""
        for attempt in self.attempts(deadline, what):
            with attempt:
                return fn()
        raise AssertionError("unreachable: tenacity re-raises or returns")  # pragma: no cover


#: An interactive command (``unblock``, ``run --once``, ``check --live``) gives up on an
#: unreachable host after this long, leaving room for one last attempt within 30 s.
INTERACTIVE_GIVE_UP = 20.0


def interactive(policy: RetryPolicy, budget: float = INTERACTIVE_GIVE_UP) -> RetryPolicy:
    """``policy`` for a command someone waits on: network errors stop being retried
    ``budget`` seconds from now, whichever call meets them."""
    return dataclasses.replace(policy, network_give_up=Deadline.after(budget))
