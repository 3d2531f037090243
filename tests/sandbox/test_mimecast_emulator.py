"""The Mimecast emulator behaves like the API 2.0 it stands for: tokens, filters, paging, faults."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx2 as httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threatshare.sandbox.mimecast import (
    FAULTS,
    MimecastEmulator,
    impersonation_log,
    recorded_free_mail_impersonation,
    recorded_policy_verdict_log,
    url_log,
)
from threatshare.sandbox.mimecast_logs import LogBook
from threatshare.sandbox.server import EmulatorServer

T0 = datetime(2024, 11, 14, 12, 0, tzinfo=UTC)
URL_PATH = "/api/ttp/url/get-logs"
IMP_PATH = "/api/ttp/impersonation/get-logs"


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S+0000")


@pytest.fixture
def emulator() -> MimecastEmulator:
    return MimecastEmulator(client_id="cid", client_secret="s3cret-value")


@pytest.fixture
def http(emulator: MimecastEmulator) -> Iterator[httpx.Client]:
    with (
        EmulatorServer(emulator) as server,
        httpx.Client(base_url=server.url, timeout=5, trust_env=False) as client,
    ):
        yield client


def token(http: httpx.Client, secret: str = "s3cret-value") -> str:
    form = {"grant_type": "client_credentials", "client_id": "cid", "client_secret": secret}
    response = http.post("/oauth/token", data=form)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def query(
    http: httpx.Client,
    access: str,
    path: str = URL_PATH,
    data: dict[str, Any] | None = None,
    page_token: str | None = None,
    page_size: int | None = None,
) -> httpx.Response:
    pagination: dict[str, Any] = {}
    if page_size is not None:
        pagination["pageSize"] = page_size
    if page_token is not None:
        pagination["pageToken"] = page_token
    body = {"meta": {"pagination": pagination}, "data": [data] if data is not None else []}
    return http.post(path, json=body, headers={"Authorization": f"Bearer {access}"})


def window(**extra: Any) -> dict[str, Any]:
    return {"from": at(0), "to": at(60), **extra}


def records_of(response: httpx.Response, key: str = "clickLogs") -> list[dict[str, Any]]:
    body = response.json()
    assert response.status_code == 200 and body["fail"] == [], body
    return body["data"][0][key] if body["data"] else []


def pull_all(
    http: httpx.Client, access: str, data: dict[str, Any], size: int
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every record of a query, following ``next`` up to the trailing empty page (which
    carries ``next`` too, as real windows end); and the page tokens seen."""
    records: list[dict[str, Any]] = []
    tokens: list[str] = []
    page_token = None
    for _ in range(100):
        response = query(http, access, data=data, page_token=page_token, page_size=size)
        page = records_of(response)
        records += page
        page_token = response.json()["meta"]["pagination"].get("next")
        assert page_token is not None, "every page carries next, the last one too"
        if not page:
            return records, tokens
        tokens.append(page_token)
    raise AssertionError("pagination did not end")


class TestTokens:
    def test_good_credentials_get_a_bearer_token(self, http: httpx.Client) -> None:
        """Client id and secret in the form body get a Bearer token with its lifetime."""
        form = {
            "grant_type": "client_credentials",
            "client_id": "cid",
            "client_secret": "s3cret-value",
        }
        body = http.post("/oauth/token", data=form).json()
        assert (
            body["token_type"] == "Bearer" and body["expires_in"] == 1800 and body["access_token"]
        )

    @pytest.mark.parametrize(
        ("form", "status", "error"),
        [
            ({"client_id": "cid", "client_secret": "wrong"}, 401, "invalid_client"),
            ({"client_id": "other", "client_secret": "s3cret-value"}, 401, "invalid_client"),
            ({}, 401, "invalid_client"),
        ],
    )
    def test_bad_credentials_are_refused(
        self, http: httpx.Client, form: dict[str, str], status: int, error: str
    ) -> None:
        """A wrong client id or secret gets a 401 JSON error without echoing the secret."""
        response = http.post("/oauth/token", data={"grant_type": "client_credentials", **form})
        assert response.status_code == status and response.json()["error"] == error
        assert "s3cret-value" not in response.text

    def test_other_grant_types_are_refused(self, http: httpx.Client) -> None:
        """Only the client-credentials grant is served."""
        form = {"grant_type": "password", "client_id": "cid", "client_secret": "s3cret-value"}
        assert http.post("/oauth/token", data=form).status_code == 400

    def test_rotation_refuses_old_secret_and_old_tokens(
        self, http: httpx.Client, emulator: MimecastEmulator
    ) -> None:
        """After a rotation the old secret gets no token and tokens issued before stop working."""
        old = token(http)
        emulator.rotate_secret("new-secret")
        form = {"grant_type": "client_credentials", "client_id": "cid", "client_secret": "x"}
        form["client_secret"] = "s3cret-value"
        assert http.post("/oauth/token", data=form).status_code == 401
        assert query(http, old, data=window()).status_code == 401
        assert query(http, token(http, "new-secret"), data=window()).status_code == 200

    def test_revoked_application_gets_nothing(
        self, http: httpx.Client, emulator: MimecastEmulator
    ) -> None:
        """A revoked application's tokens and its token requests are refused."""
        access = token(http)
        emulator.revoke()
        assert query(http, access, data=window()).status_code == 401
        form = {"grant_type": "client_credentials", "client_id": "cid"}
        form["client_secret"] = "s3cret-value"
        assert http.post("/oauth/token", data=form).status_code == 401


class TestBearerAuth:
    def test_missing_header_is_401_fail_envelope(self, http: httpx.Client) -> None:
        """A log call without a bearer token gets 401 with the gateway's flat fail[] shape."""
        response = http.post(URL_PATH, json={"data": [window()]})
        assert response.status_code == 401
        assert response.json()["fail"][0]["code"] == "token_missing"

    def test_unknown_token_is_token_expired(self, http: httpx.Client) -> None:
        """A token the gateway never issued is answered 401 token_expired."""
        response = query(http, "made-up-token", data=window())
        assert response.status_code == 401
        assert response.json()["fail"][0]["code"] == "token_expired"

    def test_expired_token_is_token_expired(
        self, http: httpx.Client, emulator: MimecastEmulator
    ) -> None:
        """A token past its lifetime (or expired on purpose) is answered 401 token_expired."""
        access = token(http)
        assert query(http, access, data=window()).status_code == 200
        emulator.expire_tokens()
        response = query(http, access, data=window())
        assert response.status_code == 401 and response.json()["fail"][0]["code"] == "token_expired"

    def test_token_lifetime_knob(self, http: httpx.Client, emulator: MimecastEmulator) -> None:
        """Tokens live as long as ``token_lifetime`` says, and report it in expires_in."""
        emulator.token_lifetime = 0.2
        access = token(http)
        assert query(http, access, data=window()).status_code == 200
        time.sleep(0.25)
        assert query(http, access, data=window()).status_code == 401


class TestFilters:
    def test_from_inclusive_to_exclusive_on_date(
        self, http: httpx.Client, emulator: MimecastEmulator
    ) -> None:
        """Records dated exactly ``from`` are served, records dated exactly ``to`` are not."""
        emulator.add_url_logs(url_log(f"https://m{m}.example/", at(m)) for m in (-1, 0, 30, 60))
        records = records_of(query(http, token(http), data=window()))
        assert sorted(r["url"] for r in records) == ["https://m0.example/", "https://m30.example/"]

    def test_from_and_to_accept_rfc3339_z(
        self, http: httpx.Client, emulator: MimecastEmulator
    ) -> None:
        """``from``/``to`` in RFC 3339 with ``Z`` select the same records as ``+0000``."""
        emulator.add_url_logs(url_log(f"https://m{m}.example/", at(m)) for m in (5, 90))
        data = {"from": "2024-11-14T12:00:00Z", "to": "2024-11-14T13:00:00Z"}
        assert [r["url"] for r in records_of(query(http, token(http), data=data))] == [
            "https://m5.example/"
        ]

    def test_bad_date_is_fail_on_http_200(self, http: httpx.Client) -> None:
        """An unreadable date is refused with fail[] (retryable false) on HTTP 200."""
        response = query(http, token(http), data={"from": "yesterday", "to": at(0)})
        assert response.status_code == 200
        error = response.json()["fail"][0]["errors"][0]
        assert error["code"] == "err_validation_invalid_date" and error["retryable"] is False

    def test_scan_result_and_route(self, http: httpx.Client, emulator: MimecastEmulator) -> None:
        """scanResult and route keep only matching records; "all" or absent keeps every one."""
        emulator.add_url_logs(
            [
                url_log("https://bad.example/", at(1)),
                url_log("https://good.example/", at(2), scanResult="clean"),
                url_log("https://out.example/", at(3), route="outbound"),
            ]
        )
        access = token(http)

        def urls(**filters: Any) -> list[str]:
            return [r["url"] for r in records_of(query(http, access, data=window(**filters)))]

        assert urls(scanResult="malicious") == ["https://out.example/", "https://bad.example/"]
        assert urls(scanResult="malicious", route="inbound") == ["https://bad.example/"]
        assert len(urls(scanResult="all")) == len(urls()) == 3

    def test_tagged_malicious_and_identifiers(
        self, http: httpx.Client, emulator: MimecastEmulator
    ) -> None:
        """taggedMalicious and identifiers filter impersonation logs on eventTime's window."""
        emulator.add_impersonation_logs(
            [
                impersonation_log("a@examp1e.com", at(1), ["similar_internal_domain"]),
                impersonation_log("b@gmail.com", at(2), ["internal_user_name"]),
                impersonation_log(
                    "c@exarnple.com", at(3), ["newly_observed_domain"], taggedMalicious=False
                ),
                impersonation_log("d@late.example", at(61), ["newly_observed_domain"]),
            ]
        )
        access = token(http)

        def senders(**filters: Any) -> list[str]:
            response = query(http, access, IMP_PATH, window(oldestFirst=True, **filters))
            return [r["senderAddress"] for r in records_of(response, "impersonationLogs")]

        assert senders(taggedMalicious=True) == ["a@examp1e.com", "b@gmail.com"]
        assert senders(taggedMalicious=False) == ["c@exarnple.com"]
        assert senders(identifiers=["internal_user_name"]) == ["b@gmail.com"]

    def test_builders_make_full_records(self) -> None:
        """The builders produce the reference's fields, with overrides applied."""
        click = url_log("https://x.example/a", T0, category="Phishing")
        assert click["date"] == "2024-11-14T12:00:00+0000" and click["category"] == "Phishing"
        assert {"userEmailAddress", "messageId", "ttpDefinition", "creationMethod"} <= set(click)
        hit = impersonation_log("ceo@examp1e.com", T0, ["similar_internal_domain"])
        result = hit["impersonationResults"][0]
        assert result["stringSimilarToDomain"] == "examp1e.com" and hit["id"].startswith("MTOKEN:")


class TestPaging:
    def test_oldest_first_orders_ascending_and_default_descending(
        self, http: httpx.Client, emulator: MimecastEmulator
    ) -> None:
        """oldestFirst true serves oldest first; the default is newest first, across pages."""
        emulator.add_url_logs(url_log(f"https://m{m}.example/", at(m)) for m in (7, 3, 9, 1, 5))
        access = token(http)
        ascending, _ = pull_all(http, access, window(oldestFirst=True), 2)
        descending, _ = pull_all(http, access, window(), 2)
        assert [r["date"] for r in ascending] == [at(m) for m in (1, 3, 5, 7, 9)]
        assert [r["date"] for r in descending] == [at(m) for m in (9, 7, 5, 3, 1)]

    def test_windows_end_with_an_empty_page_that_carries_next(
        self, http: httpx.Client, emulator: MimecastEmulator
    ) -> None:
        """Four records at two a page make two pages, both with ``next``, then an empty page
        that still carries ``next`` (the real ending); the documented ending, when asked for,
        has no ``next`` on the second page."""
        emulator.add_url_logs(url_log(f"https://m{m}.example/", at(m)) for m in range(4))
        access = token(http)
        records, tokens = pull_all(http, access, window(oldestFirst=True), 2)
        assert len(records) == 4 and len(tokens) == 2
        trailing = query(http, access, page_token=tokens[-1], page_size=2).json()
        assert trailing["data"] == [] and trailing["meta"]["pagination"]["next"]
        emulator.trailing_empty_page = False
        first = query(http, access, data=window(oldestFirst=True), page_size=2).json()
        second = query(http, access, page_token=first["meta"]["pagination"]["next"], page_size=2)
        assert len(records_of(second)) == 2 and "next" not in second.json()["meta"]["pagination"]

    @pytest.mark.parametrize("past_end", ["empty", "error", "repeat"])
    def test_the_token_of_the_trailing_empty_page(
        self, http: httpx.Client, emulator: MimecastEmulator, past_end: str
    ) -> None:
        """The token an empty page carries gives another empty page with a new token, a
        ``fail[]`` refusing the token, or an empty page with the same token, as set."""
        emulator.past_end = past_end  # type: ignore[assignment]
        access = token(http)
        empty = query(http, access, data=window(oldestFirst=True), page_size=2).json()
        assert empty["data"] == []
        end_token = empty["meta"]["pagination"]["next"]
        answer = query(http, access, page_token=end_token, page_size=2).json()
        if past_end == "error":
            assert answer["fail"][0]["errors"][0]["code"] == "err_invalid_page_token"
            return
        assert answer["data"] == [] and answer["fail"] == []
        again = answer["meta"]["pagination"]["next"]
        assert (again == end_token) is (past_end == "repeat")

    def test_page_meta_and_empty_page(self, http: httpx.Client, emulator: MimecastEmulator) -> None:
        """Pages report their size and the total; an empty answer has ``data: []``."""
        emulator.add_url_logs(url_log(f"https://m{m}.example/", at(m)) for m in range(3))
        access = token(http)
        meta = query(http, access, data=window(), page_size=2).json()["meta"]["pagination"]
        assert meta["pageSize"] == 2 and meta["totalCount"] == 3 and meta["next"]
        empty = query(http, access, data={"from": at(100), "to": at(200)}).json()
        assert empty["data"] == [] and empty["meta"]["pagination"]["totalCount"] == 0

    def test_page_size_is_capped_at_500(
        self, http: httpx.Client, emulator: MimecastEmulator
    ) -> None:
        """A pageSize over 500 gets pages of 500."""
        emulator.add_url_logs(url_log(f"https://m{i}.example/", at(i / 100)) for i in range(600))
        response = query(http, token(http), data=window(), page_size=10_000)
        assert len(records_of(response)) == 500

    def test_bad_page_size_is_refused(self, http: httpx.Client) -> None:
        """A non-positive pageSize is a validation failure."""
        response = query(http, token(http), data=window(), page_size=0)
        assert response.json()["fail"][0]["errors"][0]["code"] == "err_validation_page_size"

    def test_tokens_are_opaque(self, http: httpx.Client, emulator: MimecastEmulator) -> None:
        """The same query twice gets different, unguessable tokens (not offsets)."""
        emulator.add_url_logs(url_log(f"https://m{m}.example/", at(m)) for m in range(3))
        access = token(http)
        first = query(http, access, data=window(), page_size=1).json()["meta"]["pagination"]
        again = query(http, access, data=window(), page_size=1).json()["meta"]["pagination"]
        assert first["next"] != again["next"] and len(first["next"]) >= 16
        assert not first["next"].isdigit()

    def test_token_is_bound_to_its_query_and_endpoint(
        self, http: httpx.Client, emulator: MimecastEmulator
    ) -> None:
        """A token sent with another query, to another endpoint, or made up, is refused."""
        emulator.add_url_logs(url_log(f"https://m{m}.example/", at(m)) for m in range(3))
        access = token(http)
        page = query(http, access, data=window(), page_size=1).json()
        next_token = page["meta"]["pagination"]["next"]
        other = {"from": at(0), "to": at(59)}
        for response in (
            query(http, access, data=other, page_token=next_token),
            query(http, access, IMP_PATH, window(), page_token=next_token),
            query(http, access, data=window(), page_token="AAAA" + next_token[4:]),
        ):
            assert response.json()["fail"][0]["errors"][0]["code"] == "err_invalid_page_token"

    def test_token_alone_continues_its_query_and_can_be_resent(
        self, http: httpx.Client, emulator: MimecastEmulator
    ) -> None:
        """A token without data[0] continues its query, and re-sending it serves the same page."""
        emulator.add_url_logs(url_log(f"https://m{m}.example/", at(m)) for m in range(3))
        access = token(http)
        first = query(http, access, data=window(oldestFirst=True), page_size=1).json()
        next_token = first["meta"]["pagination"]["next"]
        once = records_of(query(http, access, page_token=next_token, page_size=1))
        twice = records_of(query(http, access, page_token=next_token, page_size=1))
        assert once == twice and once[0]["url"] == "https://m1.example/"

    def test_records_added_between_pages_do_not_repeat_records(
        self, http: httpx.Client, emulator: MimecastEmulator
    ) -> None:
        """A record inserted before the cursor while paging shifts nothing: no record repeats."""
        emulator.add_url_logs(url_log(f"https://m{m}.example/", at(m)) for m in (10, 20, 30, 40))
        access = token(http)
        data = window(oldestFirst=True)
        first = query(http, access, data=data, page_size=2)
        emulator.add_url_logs([url_log("https://late.example/", at(5))])
        rest = query(
            http,
            access,
            data=data,
            page_size=2,
            page_token=first.json()["meta"]["pagination"]["next"],
        )
        urls = [r["url"] for r in records_of(first) + records_of(rest)]
        assert urls == [f"https://m{m}.example/" for m in (10, 20, 30, 40)]


@settings(max_examples=60, deadline=None)
@given(
    minutes=st.lists(st.integers(-5, 65), max_size=30),
    size=st.integers(1, 6),
    oldest=st.booleans(),
)
def test_paging_serves_every_match_once_in_order(
    minutes: list[int], size: int, oldest: bool
) -> None:
    """Following ``next`` serves each record of the window exactly once, in time order."""
    book = LogBook()
    book.add("url", [url_log(f"https://m{i}.example/", at(m)) for i, m in enumerate(minutes)])
    inside = sorted((m, i) for i, m in enumerate(minutes) if 0 <= m < 60)
    expected = [f"https://m{i}.example/" for _, i in (inside if oldest else inside[::-1])]
    served: list[str] = []
    page_token = None
    for _ in range(len(minutes) + 2):
        page = book.page("url", window(oldestFirst=oldest), page_token, size)
        assert page.total == len(expected) and len(page.records) <= size
        served += [r["url"] for r in page.records]
        page_token = page.next_token
        assert page_token is not None  # the real API's pages all carry next
        if not page.records:
            break
    assert served == expected


class TestGenerator:
    def test_million_record_backlog_pages_fast(
        self, http: httpx.Client, emulator: MimecastEmulator
    ) -> None:
        """A generated backlog of 1,000,000 records serves pages from its middle quickly."""
        emulator.set_url_log_generator(1_000_000, T0, T0 + timedelta(days=30))
        access = token(http)
        data = {"from": at(15 * 1440), "to": at(15 * 1440 + 60), "oldestFirst": True}
        started = time.monotonic()
        records, tokens = pull_all(http, access, data, 500)
        assert time.monotonic() - started < 3
        dates = [r["date"] for r in records]
        assert dates == sorted(dates) and at(15 * 1440) <= dates[0] and dates[-1] < data["to"]
        assert 1300 <= len(records) <= 1400 and len(tokens) == -(-len(records) // 500)
        assert len({r["url"] for r in records}) == len(records)

    def test_generator_replaces_storage(self, emulator: MimecastEmulator) -> None:
        """Once URL logs are generated, adding stored ones is refused rather than ignored."""
        emulator.set_url_log_generator(10, T0, T0 + timedelta(hours=1))
        with pytest.raises(RuntimeError):
            emulator.add_url_logs([url_log("https://x.example/", at(1))])


class TestFaults:
    @pytest.mark.parametrize(
        ("kind", "status"),
        [
            ("429", 429),
            ("429_bare", 429),
            ("500", 500),
            ("502", 502),
            ("503", 503),
            ("proxy", 502),
            ("fail_retryable", 200),
            ("fail_permanent", 200),
            ("bad_shape", 200),
            ("400", 400),
            ("401", 401),
            ("403", 403),
            ("404", 404),
            ("418", 418),
        ],
    )
    def test_scripted_fault_answers_once(
        self, http: httpx.Client, emulator: MimecastEmulator, kind: Any, status: int
    ) -> None:
        """A scripted fault answers the next call with its status; the call after is normal."""
        access = token(http)
        emulator.fail_next("url", kind)
        assert query(http, access, data=window()).status_code == status
        assert query(http, access, data=window()).json()["fail"] == []
        assert [c.fault for c in emulator.calls_to("url")] == [kind, None]

    def test_429_carries_reset_in_milliseconds(
        self, http: httpx.Client, emulator: MimecastEmulator
    ) -> None:
        """A scripted 429 says X-RateLimit-Reset in milliseconds."""
        emulator.fail_next("url", "429", reset_ms=300)
        response = query(http, token(http), data=window())
        assert response.headers["X-RateLimit-Reset"] == "300"

    def test_the_real_429_has_no_rate_limit_headers(
        self, http: httpx.Client, emulator: MimecastEmulator
    ) -> None:
        """The recorded real 429 says "Over throttling limit (10000/hour)" and carries no
        X-RateLimit-* header."""
        emulator.fail_next("url", "429_bare")
        response = query(http, token(http), data=window())
        assert response.json() == {"detail": "Over throttling limit (10000/hour)"}
        assert not [name for name in response.headers if name.lower().startswith("x-ratelimit")]

    def test_fail_kinds_say_whether_retryable(
        self, http: httpx.Client, emulator: MimecastEmulator
    ) -> None:
        """fail_retryable and fail_permanent carry retryable true and false in fail[].errors[]."""
        access = token(http)
        emulator.fail_next("url", "fail_retryable")
        emulator.fail_next("url", "fail_permanent")
        flags = [query(http, access, data=window()).json()["fail"][0]["errors"][0]["retryable"]]
        flags.append(query(http, access, data=window()).json()["fail"][0]["errors"][0]["retryable"])
        assert flags == [True, False]

    def test_proxy_page_is_not_json(self, http: httpx.Client, emulator: MimecastEmulator) -> None:
        """The proxy fault is an HTML page."""
        emulator.fail_next("url", "proxy")
        response = query(http, token(http), data=window())
        assert response.headers["Content-Type"] == "text/html"
        with pytest.raises(ValueError):
            response.json()

    def test_drop_closes_the_connection(
        self, http: httpx.Client, emulator: MimecastEmulator
    ) -> None:
        """The drop fault breaks the answer off halfway."""
        access = token(http)
        emulator.fail_next("url", "drop")
        with pytest.raises(httpx.TransportError):
            query(http, access, data=window())

    def test_token_endpoint_faults(self, http: httpx.Client, emulator: MimecastEmulator) -> None:
        """The token endpoint can be scripted too; a 401 there is an OAuth invalid_client."""
        emulator.fail_next("token", "401")
        emulator.fail_next("token", "503")
        form = {"grant_type": "client_credentials", "client_id": "cid"}
        form["client_secret"] = "s3cret-value"
        first = http.post("/oauth/token", data=form)
        assert first.status_code == 401 and first.json()["error"] == "invalid_client"
        assert http.post("/oauth/token", data=form).status_code == 503
        assert http.post("/oauth/token", data=form).status_code == 200

    def test_unknown_fault_is_refused(self, emulator: MimecastEmulator) -> None:
        """A typo in a fault script fails loudly instead of scripting nothing."""
        with pytest.raises(ValueError):
            emulator.fail_next("url", "999")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            emulator.fail_next("nowhere", "500")  # type: ignore[arg-type]
        assert "drop" in FAULTS

    def test_temporary_failure_rate_is_seeded_and_temporary(self, http: httpx.Client) -> None:
        """A failure rate answers about that fraction with temporary faults, reproducibly."""

        def faults(seed: int) -> list[str | None]:
            emulator = MimecastEmulator(
                temporary_failure_rate=0.5, seed=seed, rate_limit_reset_ms=1
            )
            with (
                EmulatorServer(emulator) as server,
                httpx.Client(base_url=server.url, timeout=5, trust_env=False) as client,
            ):
                for _ in range(40):
                    with contextlib.suppress(httpx.TransportError):
                        client.post(URL_PATH, json={"data": [window()]})
            return [c.fault for c in emulator.calls]

        first, again = faults(7), faults(7)
        assert first == again
        failed = [f for f in first if f is not None]
        assert 8 <= len(failed) <= 32
        assert set(failed) <= {"429", "500", "502", "503", "proxy", "fail_retryable", "drop"}

    def test_latency_delays_each_answer(
        self, http: httpx.Client, emulator: MimecastEmulator
    ) -> None:
        """The latency knob delays every answer by about that much."""
        emulator.latency = 0.2
        started = time.monotonic()
        http.post("/oauth/token", data={})
        assert time.monotonic() - started >= 0.2


class TestClock:
    def test_every_answer_carries_the_emulators_own_date(
        self, http: httpx.Client, emulator: MimecastEmulator
    ) -> None:
        """Tokens, pages and errors carry a Date header from the emulator's clock, which a
        test sets apart from every other clock; it is also the default ``to`` of a query."""
        mimecast_now = datetime(2026, 3, 1, 12, 0, 7, tzinfo=UTC)
        emulator.clock = lambda: mimecast_now
        emulator.add_url_logs(
            [
                url_log("https://before.example/", mimecast_now - timedelta(minutes=1)),
                url_log("https://after.example/", mimecast_now + timedelta(minutes=1)),
            ]
        )
        access = token(http)
        answers = [
            http.post("/oauth/token", data={}),
            query(http, access, data={"oldestFirst": True}),
            query(http, "wrong", data=window()),
        ]
        for answer in answers:
            assert parsedate_to_datetime(answer.headers["Date"]) == mimecast_now
        assert [r["url"] for r in records_of(answers[1])] == ["https://before.example/"]


class TestRecordedRecords:
    def test_the_recorded_real_records_are_served_as_recorded(
        self, http: httpx.Client, emulator: MimecastEmulator
    ) -> None:
        """The recorded policy verdict (OneDrive's installer, "Dangerous file extension") is
        a malicious URL log, and the recorded free-mail impersonation is tagged malicious
        with a name check only."""
        emulator.add_url_logs([recorded_policy_verdict_log(at(1))])
        emulator.add_impersonation_logs(
            [recorded_free_mail_impersonation(at(2), "targeted_threat_dictionary")]
        )
        access = token(http)
        (click,) = records_of(query(http, access, data=window(scanResult="malicious")))
        assert (
            click["category"] == "Dangerous file extension"
            and "DangerousFileExt" in (click["tagMap"])
        )
        answer = query(http, access, IMP_PATH, data=window(taggedMalicious=True))
        (hit,) = records_of(answer, "impersonationLogs")
        assert hit["senderAddress"].endswith("@gmail.com")
        assert hit["identifiers"] == ["targeted_threat_dictionary"]


class TestCallLog:
    def test_calls_record_query_and_token_never_secrets(
        self, http: httpx.Client, emulator: MimecastEmulator
    ) -> None:
        """The call log keeps each call's data[0], page token and status, and no secret."""
        emulator.add_url_logs(url_log(f"https://m{m}.example/", at(m)) for m in range(3))
        access = token(http)
        pull_all(http, access, window(oldestFirst=True), 2)
        calls = emulator.calls_to("url")
        assert [c.status for c in calls] == [200] * 3 and [c.records for c in calls] == [2, 1, 0]
        assert calls[0].page_token is None and calls[1].page_token is not None
        assert calls[0].query == calls[1].query == window(oldestFirst=True)
        assert "s3cret-value" not in repr(emulator.calls) and access not in repr(emulator.calls)

    def test_unknown_route_and_method(self, http: httpx.Client, emulator: MimecastEmulator) -> None:
        """Unknown paths get 404 and a GET on a log path gets 405, both logged."""
        assert http.post("/api/nothing").status_code == 404
        assert http.get(URL_PATH).status_code == 405
        assert [c.status for c in emulator.calls] == [404, 405]
