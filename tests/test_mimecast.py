"""The Mimecast client pulls windows page by page and classifies every failure as
docs/design.md#error-policy says."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx2 as httpx
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from threatshare.auth import ClientCredentials
from threatshare.config import MimecastAccount
from threatshare.errors import (
    AuthError,
    Forbidden,
    NetworkError,
    PermanentError,
    RateLimited,
    RequestRejected,
    TemporaryError,
    ThreatshareError,
    UpstreamUnavailable,
)
from threatshare.http import Deadline, RetryPolicy
from threatshare.mimecast import MimecastClient, format_time, rate_limit_wait
from threatshare.sandbox.mimecast import MimecastEmulator, impersonation_log, url_log
from threatshare.sandbox.server import EmulatorServer, Request, Response, json_response

T0 = datetime(2024, 11, 14, 12, 0, tzinfo=UTC)
WINDOW = (T0, T0 + timedelta(hours=1))
FAST = RetryPolicy(max_attempts=3, initial_wait=0.01, max_wait=0.05, jitter=0.01)
SECRET = "mc-secret-value-1234"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
def emulator() -> MimecastEmulator:
    return MimecastEmulator(client_id="cid", client_secret=SECRET)


@pytest.fixture
def server(emulator: MimecastEmulator) -> Iterator[EmulatorServer]:
    with EmulatorServer(emulator) as running:
        yield running


ClientFactory = Callable[..., MimecastClient]


@pytest.fixture
def make_client(emulator: MimecastEmulator, server: EmulatorServer) -> Iterator[ClientFactory]:
    """Builds clients of the emulated account (closed at the end of the test)."""
    built: list[MimecastClient] = []

    def build(
        page_size: int = 500,
        policy: RetryPolicy = FAST,
        deadline: float = 10.0,
        secret: str = SECRET,
        base_url: str | None = None,
        **kwargs: Any,
    ) -> MimecastClient:
        account = MimecastAccount(
            base_url=base_url or server.url,
            client_id="cid",
            client_secret=SecretStr(secret),
            page_size=page_size,
        )
        client = MimecastClient(account, deadline=Deadline.after(deadline), policy=policy, **kwargs)
        built.append(client)
        return client

    yield build
    for client in built:
        client.close()


def seed_urls(emulator: MimecastEmulator, count: int) -> list[str]:
    urls = [f"https://evil-{i}.example/login" for i in range(count)]
    # Inserted newest first, so any order seen is the server's, not the insertion's.
    emulator.add_url_logs(url_log(u, at(i + 1)) for i, u in reversed(list(enumerate(urls))))
    return urls


def pull_urls(client: MimecastClient) -> list[list[dict[str, Any]]]:
    return list(client.url_log_pages(*WINDOW))


class TestPaging:
    def test_window_of_several_pages_keeps_one_from_and_to(
        self, emulator: MimecastEmulator, make_client: ClientFactory
    ) -> None:
        """A 3-page window is pulled oldest first, every page with the same from/to, each
        record exactly once; it ends as real windows do, with an empty page carrying
        ``next``, whose token is followed once more."""
        urls = seed_urls(emulator, 7)
        pages = pull_urls(make_client(page_size=3))
        assert [len(p) for p in pages] == [3, 3, 1, 0, 0]
        assert [r["url"] for p in pages for r in p] == urls
        calls = emulator.calls_to("url")
        assert len(calls) == 5
        expected = {
            "from": "2024-11-14T12:00:00+0000",
            "to": "2024-11-14T13:00:00+0000",
            "oldestFirst": True,
            "scanResult": "malicious",
            "route": "all",
        }
        assert all(call.query == expected for call in calls)
        assert calls[0].page_token is None and None not in [c.page_token for c in calls[1:]]
        assert {c.page_size for c in calls} == {3}

    def test_pages_are_streamed_lazily(
        self, emulator: MimecastEmulator, make_client: ClientFactory
    ) -> None:
        """The next page is requested only when the caller asks for it."""
        seed_urls(emulator, 5)
        pages = make_client(page_size=2).url_log_pages(*WINDOW)
        next(pages)
        assert len(emulator.calls_to("url")) == 1

    def test_only_malicious_clicks_are_asked_for(
        self, emulator: MimecastEmulator, make_client: ClientFactory
    ) -> None:
        """Clean clicks in the window are filtered out by the server-side scanResult filter."""
        emulator.add_url_logs(
            [
                url_log("https://bad.example/", at(1)),
                url_log("https://ok.example/", at(2), scanResult="clean"),
            ]
        )
        assert [r["url"] for p in pull_urls(make_client()) for r in p] == ["https://bad.example/"]

    def test_impersonation_pages_are_tagged_malicious(
        self, emulator: MimecastEmulator, make_client: ClientFactory
    ) -> None:
        """Impersonation logs come oldest first and only those tagged malicious."""
        emulator.add_impersonation_logs(
            [
                impersonation_log("b@exarnple.com", at(2), ["similar_internal_domain"]),
                impersonation_log("a@examp1e.com", at(1), ["newly_observed_domain"]),
                impersonation_log(
                    "c@x.example", at(3), ["custom_external_domain"], taggedMalicious=False
                ),
            ]
        )
        pages = list(make_client(page_size=1).impersonation_log_pages(*WINDOW))
        assert [r["senderAddress"] for p in pages for r in p] == ["a@examp1e.com", "b@exarnple.com"]
        calls = emulator.calls_to("impersonation")
        assert len(calls) == 4 and all(  # two pages, the trailing empty page, once more
            c.query and c.query["taggedMalicious"] is True for c in calls
        )

    def test_empty_window_yields_one_empty_page(
        self, emulator: MimecastEmulator, make_client: ClientFactory
    ) -> None:
        """A window with nothing in it is its trailing empty page and the one more call its
        token is worth: no records."""
        assert pull_urls(make_client()) == [[], []]
        assert len(emulator.calls_to("url")) == 2

    def test_retried_page_resends_its_page_token(
        self, emulator: MimecastEmulator, make_client: ClientFactory
    ) -> None:
        """A page that failed once is asked again with the same page token and query."""
        urls = seed_urls(emulator, 4)
        pages = make_client(page_size=2).url_log_pages(*WINDOW)
        first = next(pages)
        emulator.fail_next("url", "503")
        rest = list(pages)
        assert [r["url"] for p in [first, *rest] for r in p] == urls
        second, retried = emulator.calls_to("url")[1:3]
        assert second.status == 503 and retried.status == 200
        assert second.page_token == retried.page_token is not None
        assert second.query == retried.query

    def test_utc_and_naive_times_format_the_same(self) -> None:
        """from/to are sent in UTC as +0000; an offset is converted and a naive time is UTC."""
        cet = datetime(2024, 11, 14, 13, 0, tzinfo=UTC).astimezone()
        assert format_time(cet) == "2024-11-14T13:00:00+0000"
        assert format_time(datetime(2024, 11, 14, 13, 0)) == "2024-11-14T13:00:00+0000"

    def test_check_reads_both_logs(
        self, emulator: MimecastEmulator, make_client: ClientFactory
    ) -> None:
        """The live check gets a token and reads one record of each log, reporting the totals."""
        now = datetime.now(UTC)
        emulator.add_url_logs(
            url_log(f"https://c{i}.example/", now - timedelta(hours=i + 1)) for i in range(3)
        )
        summary = make_client().check()
        assert "3 malicious URL clicks" in summary and "0 impersonations" in summary
        assert {c.page_size for c in emulator.calls if c.path.startswith("/api")} == {1}


LogAnswer = Callable[[Request], Response]


@pytest.fixture
def crafted(
    emulator: MimecastEmulator, make_client: ClientFactory
) -> Iterator[Callable[[LogAnswer], MimecastClient]]:
    """A client of a server whose token endpoint is the emulator's and whose log answers are
    written by the test (shapes the emulator never produces)."""
    servers: list[EmulatorServer] = []

    def build(logs: LogAnswer) -> MimecastClient:
        def app(request: Request) -> Response:
            return emulator(request) if request.path == "/oauth/token" else logs(request)

        servers.append(EmulatorServer(app).start())
        return make_client(base_url=servers[-1].url)

    yield build
    for running in servers:
        running.stop()


class TestUntrustedAnswers:
    def test_records_that_are_not_objects_are_left_out_and_counted(
        self, crafted: Callable[[LogAnswer], MimecastClient]
    ) -> None:
        """Entries of a page that are not JSON objects are skipped and counted, not fatal."""
        body = {"meta": {"status": 200, "pagination": {}}, "fail": []}
        body["data"] = [{"clickLogs": [1, "x", None, url_log("https://a.example/", at(1))]}]
        client = crafted(lambda _: json_response(200, body))
        assert [[r["url"] for r in p] for p in pull_urls(client)] == [["https://a.example/"]]
        assert client.malformed_records == 3

    @pytest.mark.parametrize(
        "body",
        [
            [],
            {"fail": []},
            {"data": [{}], "fail": []},
            {"data": [{"impersonationLogs": []}], "fail": []},
            {"data": {"clickLogs": []}, "fail": []},
            {"data": [{"clickLogs": {"url": "x"}}], "fail": []},
            {"data": ["nope"], "fail": []},
            {"data": [], "fail": {"code": "x"}},
            {"data": [], "meta": {"pagination": {"next": 7}}, "fail": []},
        ],
    )
    def test_wrong_shapes_are_temporary(
        self, crafted: Callable[[LogAnswer], MimecastClient], body: Any
    ) -> None:
        """JSON of the wrong shape is treated as a glitch: temporary, retried, then raised."""
        client = crafted(lambda _: json_response(200, body))
        with pytest.raises(UpstreamUnavailable):
            pull_urls(client)

    def test_a_repeated_page_token_ends_the_window(
        self, crafted: Callable[[LogAnswer], MimecastClient]
    ) -> None:
        """A server that keeps sending the same next token ends the window as complete after
        the page that repeated it, not a loop and not an error."""
        calls: list[int] = []

        def looping(_: Request) -> Response:
            calls.append(1)
            page = {"pagination": {"next": "same-token"}}
            record = url_log(f"https://r{len(calls)}.example/", at(1))
            return json_response(200, {"meta": page, "data": [{"clickLogs": [record]}]})

        client = crafted(looping)
        pages = pull_urls(client)
        assert [[r["url"] for r in p] for p in pages] == [
            ["https://r1.example/"],
            ["https://r2.example/"],
        ]
        assert len(calls) == 2

    def test_fail_messages_are_cleaned_and_bounded(
        self, crafted: Callable[[LogAnswer], MimecastClient]
    ) -> None:
        """Upstream text in an error loses control characters and is truncated."""
        evil = "bad\r\nX-Injected: 1\x00" + "A" * 2000
        errors = [{"code": "err_validation_blank", "message": evil, "retryable": False}]
        body = {"meta": {"status": 200}, "data": [], "fail": [{"key": {}, "errors": errors}]}
        client = crafted(lambda _: json_response(200, body))
        with pytest.raises(RequestRejected) as caught:
            pull_urls(client)
        message = caught.value.message
        assert "\r" not in message and "\n" not in message and "\x00" not in message
        assert "err_validation_blank" in message and len(message) < 400


class TestFailArray:
    def test_retryable_fail_is_retried_then_succeeds(
        self, emulator: MimecastEmulator, make_client: ClientFactory
    ) -> None:
        """fail[] with retryable true on HTTP 200 is temporary: retried, then the page arrives."""
        urls = seed_urls(emulator, 2)
        emulator.fail_next("url", "fail_retryable")
        assert [r["url"] for p in pull_urls(make_client()) for r in p] == urls
        assert [c.fault for c in emulator.calls_to("url")][:2] == ["fail_retryable", None]

    def test_final_fail_is_rejected_without_retry(
        self, emulator: MimecastEmulator, make_client: ClientFactory
    ) -> None:
        """fail[] with retryable false on HTTP 200 is RequestRejected mimecast_request, once."""
        seed_urls(emulator, 2)
        emulator.fail_next("url", "fail_permanent", 5)
        with pytest.raises(RequestRejected) as caught:
            pull_urls(make_client())
        assert caught.value.code == "mimecast_request" and caught.value.kind == "permanent"
        assert "err_validation_blank" in caught.value.message
        assert len(emulator.calls_to("url")) == 1


class TestTokens:
    def test_401_gets_exactly_one_fresh_token(
        self, emulator: MimecastEmulator, make_client: ClientFactory
    ) -> None:
        """A 401 on a log call gets one fresh token and the call succeeds on it."""
        urls = seed_urls(emulator, 2)
        emulator.fail_next("url", "401")
        assert [r["url"] for p in pull_urls(make_client()) for r in p] == urls
        assert emulator.tokens_issued == 2
        assert [c.status for c in emulator.calls_to("url")][:2] == [401, 200]

    def test_expired_token_is_replaced(
        self, emulator: MimecastEmulator, make_client: ClientFactory
    ) -> None:
        """A token expired server-side between pages is replaced once, and paging goes on."""
        urls = seed_urls(emulator, 4)
        pages = make_client(page_size=2).url_log_pages(*WINDOW)
        first = next(pages)
        emulator.expire_tokens()
        assert [r["url"] for p in [first, *pages] for r in p] == urls
        assert emulator.tokens_issued == 2

    def test_persistent_401_is_mimecast_auth(
        self, emulator: MimecastEmulator, make_client: ClientFactory
    ) -> None:
        """A 401 that persists after a fresh token is AuthError mimecast_auth, not retried."""
        emulator.fail_next("url", "401", 10)
        with pytest.raises(AuthError) as caught:
            pull_urls(make_client())
        assert caught.value.code == "mimecast_auth" and caught.value.kind == "permanent"
        assert emulator.tokens_issued == 2 and len(emulator.calls_to("url")) == 2

    def test_bad_secret_is_mimecast_auth_and_never_shown(
        self, emulator: MimecastEmulator, make_client: ClientFactory
    ) -> None:
        """A wrong secret fails at the token endpoint as mimecast_auth; the secret is not shown."""
        with capture_logs() as logs, pytest.raises(AuthError) as caught:
            pull_urls(make_client(secret="wrong-secret-value"))
        assert caught.value.code == "mimecast_auth"
        assert "wrong-secret-value" not in str(caught.value) and "wrong-secret" not in repr(logs)
        assert len(emulator.calls_to("token")) == 1 and not emulator.calls_to("url")

    def test_revoked_application_is_mimecast_auth(
        self, emulator: MimecastEmulator, make_client: ClientFactory
    ) -> None:
        """Revoking the application mid-window ends the pull with mimecast_auth."""
        seed_urls(emulator, 4)
        pages = make_client(page_size=2).url_log_pages(*WINDOW)
        next(pages)
        emulator.revoke()
        with pytest.raises(AuthError):
            list(pages)

    def test_a_shared_credential_is_reused(
        self, emulator: MimecastEmulator, server: EmulatorServer, make_client: ClientFactory
    ) -> None:
        """Two clients handed the same credential share one token (a worker's runs)."""
        credential = ClientCredentials(
            token_url=f"{server.url}/oauth/token",
            client_id="cid",
            client_secret=SecretStr(SECRET),
            error_code="mimecast_auth",
            what="Mimecast token endpoint",
        )
        try:
            for _ in range(2):
                pull_urls(make_client(credential=credential))
        finally:
            credential.close()
        assert emulator.tokens_issued == 1 and credential.fetches == 1

    def test_no_token_or_secret_in_logs(
        self, emulator: MimecastEmulator, make_client: ClientFactory
    ) -> None:
        """Page logs carry counts only: no secret, no bearer token, no record content."""
        seed_urls(emulator, 3)
        emulator.fail_next("url", "401")
        with capture_logs() as logs:
            pull_urls(make_client(page_size=2))
        text = repr(logs)
        assert SECRET not in text and "Bearer" not in text and "evil-" not in text
        pages = [entry for entry in logs if entry["event"] == "mimecast page"]
        assert [entry["records"] for entry in pages] == [2, 1, 0, 0]


class TestRateLimit:
    def test_429_waits_as_x_ratelimit_reset_says(
        self, emulator: MimecastEmulator, make_client: ClientFactory
    ) -> None:
        """X-RateLimit-Reset: 300 (ms) makes the retry wait at least 0.3 s and well under the
        default backoff's first wait (1 to 2 s)."""
        urls = seed_urls(emulator, 1)
        emulator.fail_next("url", "429", reset_ms=300)
        assert [r["url"] for p in pull_urls(make_client(policy=RetryPolicy())) for r in p] == urls
        limited, retried = emulator.calls_to("url")[:2]
        assert limited.status == 429 and retried.status == 200
        assert 0.3 <= retried.at - limited.at < 0.9

    @pytest.mark.parametrize(
        ("headers", "wait"),
        [
            ({"X-RateLimit-Reset": "1500"}, 1.5),
            ({"x-rate-limit-reset": "250"}, 0.25),
            ({"Retry-After": "7"}, 7.0),
            ({"X-RateLimit-Reset": "soon", "Retry-After": "2"}, 2.0),
            ({}, None),
        ],
    )
    def test_rate_limit_wait_headers(self, headers: dict[str, str], wait: float | None) -> None:
        """The wait comes from X-RateLimit-Reset or X-Rate-Limit-Reset in ms, else Retry-After."""
        assert rate_limit_wait(httpx.Headers(headers)) == wait


# Each Mimecast row of docs/design.md#error-policy: the scripted answer, the error class and code,
# and whether the client retries it (a temporary error is asked again; a permanent one is not).
S4_ROWS = [
    ("drop", NetworkError, "network"),
    ("429", RateLimited, "rate_limited"),
    ("500", UpstreamUnavailable, "upstream_unavailable"),
    ("502", UpstreamUnavailable, "upstream_unavailable"),
    ("503", UpstreamUnavailable, "upstream_unavailable"),
    ("proxy", UpstreamUnavailable, "upstream_unavailable"),
    ("bad_shape", UpstreamUnavailable, "upstream_unavailable"),
    ("fail_retryable", UpstreamUnavailable, "upstream_unavailable"),
    ("fail_permanent", RequestRejected, "mimecast_request"),
    ("400", RequestRejected, "mimecast_request"),
    ("403", Forbidden, "mimecast_forbidden"),
    ("404", RequestRejected, "mimecast_request"),
    ("418", RequestRejected, "mimecast_request"),
]


class TestS4Classification:
    @pytest.mark.parametrize(("kind", "error", "code"), S4_ROWS)
    def test_log_call_failure_is_classified(
        self,
        emulator: MimecastEmulator,
        make_client: ClientFactory,
        kind: Any,
        error: type[ThreatshareError],
        code: str,
    ) -> None:
        """Each failure of a log call raises the error class and code of the table of
        docs/design.md#error-policy, and only temporary ones are retried."""
        emulator.fail_next("url", kind, 10, reset_ms=5)
        policy = RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.02, jitter=0.01)
        with pytest.raises(error) as caught:
            pull_urls(make_client(policy=policy))
        assert type(caught.value) is error and caught.value.code == code
        temporary = isinstance(caught.value, TemporaryError)
        assert len(emulator.calls_to("url")) == (2 if temporary else 1)
        assert temporary != isinstance(caught.value, PermanentError)

    @pytest.mark.parametrize(
        ("kind", "error", "code"),
        [
            ("401", AuthError, "mimecast_auth"),
            ("400", AuthError, "mimecast_auth"),
            ("503", UpstreamUnavailable, "upstream_unavailable"),
            ("429", RateLimited, "rate_limited"),
        ],
    )
    def test_token_endpoint_failure_is_classified(
        self,
        emulator: MimecastEmulator,
        make_client: ClientFactory,
        kind: Any,
        error: type[ThreatshareError],
        code: str,
    ) -> None:
        """Token endpoint 400/401 are permanent mimecast_auth; 429 and 5xx are temporary."""
        emulator.fail_next("token", kind, 10, reset_ms=5)
        with pytest.raises(error) as caught:
            pull_urls(make_client())
        assert caught.value.code == code and not emulator.calls_to("url")

    def test_connection_refused_is_network(self, make_client: ClientFactory) -> None:
        """Nothing listening at the base URL is a temporary network error."""
        with EmulatorServer(MimecastEmulator()) as gone:
            url = gone.url
        with pytest.raises(NetworkError):
            pull_urls(make_client(base_url=url))

    def test_persistent_503_ends_within_the_deadline(
        self, emulator: MimecastEmulator, make_client: ClientFactory
    ) -> None:
        """A 503 that never ends is UpstreamUnavailable once the run's deadline comes, not later."""
        emulator.fail_next("url", "503", 10_000)
        policy = RetryPolicy(max_attempts=1000, initial_wait=0.05, max_wait=0.1, jitter=0.01)
        started = time.monotonic()
        with pytest.raises(UpstreamUnavailable):
            pull_urls(make_client(policy=policy, deadline=0.6))
        elapsed = time.monotonic() - started
        assert elapsed < 0.9 and len(emulator.calls_to("url")) >= 3


class TestRealEndings:
    @pytest.mark.parametrize("past_end", ["empty", "error", "repeat"])
    def test_the_trailing_empty_page_ends_the_window_cleanly(
        self, emulator: MimecastEmulator, make_client: ClientFactory, past_end: Any
    ) -> None:
        """The token of a window's trailing empty page is asked once more; whether the answer
        is another empty page, a refusal of the token or the same token again, the window
        ends complete with every record, in exactly that one more call."""
        urls = seed_urls(emulator, 3)
        emulator.past_end = past_end
        pages = pull_urls(make_client(page_size=2))
        assert [r["url"] for p in pages for r in p] == urls
        calls = emulator.calls_to("url")
        assert [c.records for c in calls] == [2, 1, 0, 0]
        assert [c.status for c in calls] == [200] * 4

    def test_a_server_error_after_the_empty_page_is_not_retried(
        self, emulator: MimecastEmulator, make_client: ClientFactory
    ) -> None:
        """A 500 to the token of the trailing empty page ends the window at once: no retry."""
        seed_urls(emulator, 1)
        pages = make_client(page_size=2).url_log_pages(*WINDOW)
        assert [len(next(pages)), len(next(pages))] == [1, 0]
        emulator.fail_next("url", "500", 5)
        assert list(pages) == []
        assert [c.status for c in emulator.calls_to("url")] == [200, 200, 500]

    def test_records_after_an_empty_page_are_still_read(
        self, crafted: Callable[[LogAnswer], MimecastClient]
    ) -> None:
        """An empty page inside a window (records follow it) does not end the window."""
        answers = iter([[], [url_log("https://late.example/", at(5))], [], []])

        def pages(_: Request) -> Response:
            meta = {"pagination": {"next": f"t{len(calls)}"}}
            calls.append(1)
            return json_response(200, {"meta": meta, "data": [{"clickLogs": next(answers)}]})

        calls: list[int] = []
        got = pull_urls(crafted(pages))
        assert [r["url"] for p in got for r in p] == ["https://late.example/"]
        assert len(calls) == 4

    def test_every_answer_reports_its_date(
        self, emulator: MimecastEmulator, make_client: ClientFactory
    ) -> None:
        """The observer hears the Date header of every log answer (errors too), as the
        emulator's clock says it, not the local one."""
        mimecast_now = datetime(2031, 5, 1, 8, 30, 15, tzinfo=UTC)
        emulator.clock = lambda: mimecast_now
        heard: list[tuple[str | None, float]] = []
        emulator.fail_next("url", "401")
        pull_urls(make_client(observe=lambda date, latency: heard.append((date, latency))))
        assert len(heard) == len(emulator.calls_to("url"))
        assert {parsedate_to_datetime(date or "") for date, _ in heard} == {mimecast_now}
        assert all(latency >= 0 for _, latency in heard)
