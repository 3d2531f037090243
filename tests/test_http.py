"""The HTTP layer: URL rules, Retry-After parsing, the retry policy and network errors that
name their host."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime

import httpx2 as httpx
import pytest
import redis
from pydantic import SecretStr

from threatshare.config import MimecastAccount, ZiaTenant
from threatshare.errors import LockLost, NetworkError, RateLimited, RequestRejected, Signal
from threatshare.http import (
    Deadline,
    RetryPolicy,
    make_client,
    parse_retry_after,
    transport_error,
    url_problem,
)
from threatshare.mimecast import MimecastClient
from threatshare.zia.client import ZiaClient
from threatshare.zia.errors import CategoryGone
from threatshare.zia.ratelimit import Limit, RateLimiter

FAST = RetryPolicy(max_attempts=5, initial_wait=0.01, max_wait=0.02, jitter=0.0)
ONCE = RetryPolicy(max_attempts=1)
LOOSE = {method: (Limit(1000, 1.0),) for method in ("GET", "POST", "PUT", "DELETE")}


class TestUrls:
    @pytest.mark.parametrize(
        ("url", "ok"),
        [
            ("https://api.services.mimecast.com", True),
            ("http://127.0.0.1:8080", True),
            ("http://localhost:1", True),
            ("http://[::1]:9", True),
            ("http://api.example.com", False),
            ("ftp://example.com", False),
            ("https://", False),
            ("http://evil.localhost:8080", False),
            ("http://localhost.example.com", False),
            ("https://user:pass@api.example.com", False),
            ("https://user@api.example.com", False),
            ("http://admin:pw@127.0.0.1:8080", False),
        ],
    )
    def test_https_only_except_loopback(self, url: str, ok: bool) -> None:
        """Only https:// is allowed, plus plain http:// to ``localhost`` or a loopback literal
        (not a name under ``.localhost``); a URL with a user name or password is refused."""
        assert (url_problem(url) is None) is ok

    def test_client_refuses_plain_http_to_remote_host(self) -> None:
        """The client factory refuses a plain-http upstream that is not loopback."""
        with pytest.raises(ValueError, match="https"):
            make_client("http://example.com")

    def test_client_has_timeouts(self) -> None:
        """Every client has connect and read timeouts."""
        client = make_client("https://example.com")
        assert client.timeout.connect == 10.0
        assert client.timeout.read == 30.0
        client.close()


class TestRetryAfter:
    @pytest.mark.parametrize(
        ("value", "seconds"),
        [("5", 5.0), ("5 seconds", 5.0), ("2s", 2.0), ("0 seconds", 1.0), (3, 3.0), ("1.5", 1.5)],
    )
    def test_forms(self, value: object, seconds: float) -> None:
        """Integers, 'N seconds', 'Ns' are read; zero still waits one second."""
        assert parse_retry_after(value) == seconds

    def test_http_date_and_garbage(self) -> None:
        """An HTTP date gives the seconds until then; garbage gives None."""
        assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 1.0  # in the past
        assert parse_retry_after("soon") is None
        assert parse_retry_after(None) is None


class TestRetryPolicy:
    def test_retries_temporary_then_succeeds(self) -> None:
        """A temporary error is retried and the call's result returned."""
        calls = []

        def flaky() -> str:
            calls.append(1)
            if len(calls) < 3:
                raise NetworkError("reset")
            return "done"

        assert FAST.call(Deadline.after(5), "t", flaky) == "done"
        assert len(calls) == 3

    def test_permanent_is_not_retried(self) -> None:
        """A permanent error is raised at once, as itself."""
        calls = []

        def refused() -> None:
            calls.append(1)
            raise RequestRejected("no")

        with pytest.raises(RequestRejected):
            FAST.call(Deadline.after(5), "t", refused)
        assert calls == [1]

    @pytest.mark.parametrize(
        "signal", [LockLost("lost"), CategoryGone("gone", category_id="CUSTOM_01")]
    )
    def test_a_signal_is_not_retried(self, signal: Signal) -> None:
        """A control signal (lock lost, category gone) is raised at once, as itself."""
        calls = []

        def turn() -> None:
            calls.append(1)
            raise signal

        with pytest.raises(type(signal)):
            FAST.call(Deadline.after(5), "t", turn)
        assert calls == [1]

    def test_other_exceptions_are_not_retried(self) -> None:
        """Exceptions that are not ours (e.g. a job timeout) pass straight through."""
        calls = []

        def boom() -> None:
            calls.append(1)
            raise TimeoutError("job timeout")

        with pytest.raises(TimeoutError):
            FAST.call(Deadline.after(5), "t", boom)
        assert calls == [1]

    def test_server_wait_is_honoured(self) -> None:
        """retry_after on the error sets the wait before the next attempt."""
        stamps: list[float] = []

        def limited() -> str:
            stamps.append(time.monotonic())
            if len(stamps) == 1:
                raise RateLimited("429", retry_after=0.3)
            return "ok"

        assert FAST.call(Deadline.after(5), "t", limited) == "ok"
        assert stamps[1] - stamps[0] >= 0.29

    def test_deadline_stops_retrying(self) -> None:
        """No sleep crosses the deadline: the last error is raised before it."""
        start = time.monotonic()

        def always() -> None:
            raise RateLimited("429", retry_after=10)

        with pytest.raises(RateLimited):
            FAST.call(Deadline.after(1), "t", always)
        assert time.monotonic() - start < 1

    def test_attempts_are_bounded(self) -> None:
        """max_attempts bounds the number of calls."""
        calls = []

        def always() -> None:
            calls.append(1)
            raise NetworkError("down")

        with pytest.raises(NetworkError):
            FAST.call(Deadline.after(30), "t", always)
        assert len(calls) == 5


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _FixedToken:
    """A credential that never calls anyone (the test is about the API host)."""

    def headers(self) -> dict[str, str]:
        return {"Authorization": "Bearer fixed"}

    def invalidate(self) -> None:
        pass

    def used(self) -> None:
        pass


class TestNetworkErrorsNameTheHost:
    def test_transport_errors_name_host_and_cause(self) -> None:
        """A refused connection reads ``<host:port>: connection refused (<call>)``; an unknown
        name reads as one, never as a bare exception class."""
        port = _closed_port()
        client = make_client(f"http://127.0.0.1:{port}")
        with client, pytest.raises(httpx.TransportError) as refused:
            client.get("/x")
        error = transport_error(refused.value, "ZIA GET /x")
        assert str(error) == f"network: 127.0.0.1:{port}: connection refused (ZIA GET /x)"
        request = httpx.Request("GET", "https://api.services.mimecast.com/oauth/token")
        unknown = httpx.ConnectError("[Errno -2] Name or service not known", request=request)
        assert str(transport_error(unknown, "Mimecast token endpoint")) == (
            "network: api.services.mimecast.com: host name not found (Mimecast token endpoint)"
        )
        timeout = httpx.ReadTimeout("timed out", request=request)
        assert "read timeout" in str(transport_error(timeout, "t"))

    def test_mimecast_and_zia_clients_name_the_unreachable_host(
        self, redis_client: redis.Redis
    ) -> None:
        """The Mimecast client (token endpoint) and the ZIA client (token endpoint and API)
        each fail with a network error that names the host they could not reach."""
        port = _closed_port()
        base = f"http://127.0.0.1:{port}"
        account = MimecastAccount(
            base_url=base, client_id="id", client_secret=SecretStr("s"), page_size=10
        )
        refused = rf"127\.0\.0\.1:{port}: connection refused"
        mimecast = MimecastClient(account, deadline=Deadline.after(5), policy=ONCE)
        with mimecast, pytest.raises(NetworkError, match=refused):
            list(mimecast.url_log_pages(datetime(2026, 1, 1, tzinfo=UTC), datetime.now(UTC)))
        tenant = ZiaTenant(
            api_base=f"{base}/api/v1",
            auth="oauth",
            token_url=f"{base}/oauth2/v1/token",
            client_id="id",
            client_secret=SecretStr("s"),
            scope="zscalerthree::1::role",
        )
        limiter = RateLimiter(redis_client, "t1", limits={}, method_limits=LOOSE)
        for credential in (None, _FixedToken()):
            zia = ZiaClient(
                tenant,
                limiter=limiter,
                deadline=Deadline.after(5),
                policy=ONCE,
                credential=credential,
            )
            try:
                with pytest.raises(NetworkError, match=refused):
                    zia.quota()
            finally:
                zia.close()
