"""The ZIA client against the IdP and ZIA emulators on loopback, with a real Redis limiter."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx
import pytest
import redis
import structlog
from pydantic import SecretStr

from threatshare import keys
from threatshare.auth import ClientCredentials
from threatshare.config import ZiaTenant
from threatshare.errors import (
    AuthError,
    CategoryRefused,
    EditLocked,
    Forbidden,
    QuotaExhausted,
    RateLimited,
    ReadOnly,
    TemporaryError,
    UpstreamUnavailable,
)
from threatshare.http import Deadline, RetryPolicy
from threatshare.sandbox.idp import IdpEmulator
from threatshare.sandbox.server import EmulatorServer
from threatshare.sandbox.zia import ZiaEmulator
from threatshare.zia.bisect import REFUSED_BY_ZIA
from threatshare.zia.categories import category_description
from threatshare.zia.client import ZiaClient
from threatshare.zia.errors import ActivationRefused, CategoryGone, ZiaRejected
from threatshare.zia.ratelimit import Limit, RateLimiter, bucket_for

SCOPE = "zscloud.net::1001::threatshare"
CLIENT_ID = "zia-prod"
SECRET = "zia-prod-very-secret-value"
API_KEY = "abcdefghijklmnopqrstuvwxyz0123456789"
PASSWORD = "admin-password-not-for-logs"
CATEGORY = "Mimecast Malicious URLs"
FAST_POLICY = RetryPolicy(max_attempts=4, initial_wait=0.01, max_wait=0.05, jitter=0.01)
# Loose limits for tests that are not about rate limits (the emulator does not enforce then).
LOOSE = {method: (Limit(1000, 1.0),) for method in ("GET", "POST", "PUT", "DELETE")}
PUT_BUCKET = "PUT /urlCategories/{id}"


def entries(count: int, prefix: str = "bad") -> list[str]:
    return [f"{prefix}{i}.example.com/p" for i in range(count)]


@dataclass
class Added:
    """What landed through :meth:`ZiaClient.add_batches`: entries (newest first), refusals."""

    pushed: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)


def add(
    client: ZiaClient,
    category_id: str,
    name: str,
    news: list[str],
    batch_size: int,
    *,
    on_batch: Callable[[list[str]], None] | None = None,
    landed: Added | None = None,
) -> Added:
    """Push ``news`` (newest first) the way a run does: ``batch_size`` at a time through
    ``add_batches``; ``landed`` sees every accepted batch even when the push raises."""
    result = landed if landed is not None else Added()

    def done(batch: list[str]) -> None:
        result.pushed.extend(batch)
        if on_batch is not None:
            on_batch(batch)

    batches = (news[start : start + batch_size] for start in range(0, len(news), batch_size))
    _, result.rejected = client.add_batches(category_id, name, batches, done)
    return result


@dataclass
class World:
    """An IdP and a ZIA tenant on loopback, a Redis, and a factory of clients."""

    idp: IdpEmulator
    zia: ZiaEmulator
    idp_url: str
    zia_url: str
    redis: redis.Redis
    real_limits: bool

    def tenant(self, auth: str = "oauth", **overrides: Any) -> ZiaTenant:
        fields: dict[str, Any] = {
            "api_base": f"{self.zia_url}/api/v1",
            "auth": auth,
            "token_url": f"{self.idp_url}/oauth2/v1/token",
            "client_id": CLIENT_ID,
            "client_secret": SecretStr(SECRET),
            "scope": SCOPE,
        }
        if auth == "legacy":
            fields = {
                "api_base": f"{self.zia_url}/api/v1",
                "auth": "legacy",
                "api_key": SecretStr(API_KEY),
                "username": "admin@example.com",
                "password": SecretStr(PASSWORD),
            }
        fields.update(overrides)
        return ZiaTenant(**fields)

    def limiter(self, tenant_id: str = "t1") -> RateLimiter:
        if self.real_limits:
            return RateLimiter(self.redis, tenant_id)
        return RateLimiter(self.redis, tenant_id, limits={}, method_limits=LOOSE)

    def client(self, tenant: ZiaTenant | None = None, **kwargs: Any) -> ZiaClient:
        kwargs.setdefault("limiter", self.limiter())
        kwargs.setdefault("deadline", Deadline.after(30))
        kwargs.setdefault("policy", FAST_POLICY)
        kwargs.setdefault("reauth_wait", 0.2)
        return ZiaClient(tenant or self.tenant(), **kwargs)

    def calls(self, bucket: str) -> list[int]:
        """Statuses of the calls the emulator logged for one bucket, in order."""
        return [call.status for call in self.zia.calls if call.bucket == bucket]


@contextmanager
def make_world(
    redis_client: redis.Redis, *, real_limits: bool = False, **zia_kwargs: Any
) -> Iterator[World]:
    idp = IdpEmulator()
    idp.add_client(CLIENT_ID, SECRET, scope=SCOPE)
    idp.add_client("oneapi", SECRET, audience="https://api.zscaler.com")
    zia_kwargs.setdefault("enforce_limits", real_limits)
    zia = ZiaEmulator(
        idp=idp,
        scope=SCOPE,
        audience="https://api.zscaler.com",
        api_key=API_KEY,
        username="admin@example.com",
        password=PASSWORD,
        **zia_kwargs,
    )
    with EmulatorServer(idp) as idp_server, EmulatorServer(zia) as zia_server:
        yield World(idp, zia, idp_server.url, zia_server.url, redis_client, real_limits)


@pytest.fixture
def world(redis_client: redis.Redis) -> Iterator[World]:
    with make_world(redis_client) as world:
        yield world


@pytest.fixture
def limited(redis_client: redis.Redis) -> Iterator[World]:
    """A world whose emulator enforces ZIA's documented limits and whose limiter uses them."""
    with make_world(redis_client, real_limits=True) as world:
        yield world


class EditingTransport(httpx.HTTPTransport):
    """Real HTTP to the emulator, with a hook that may change a request or an answer on the
    way, as a proxy could: used to shape ZIA's wording or to race another worker."""

    def __init__(
        self,
        *,
        request_hook: Callable[[httpx.Request], httpx.Request] | None = None,
        response_hook: Callable[[httpx.Request, httpx.Response], httpx.Response] | None = None,
    ) -> None:
        super().__init__()
        self._request_hook = request_hook
        self._response_hook = response_hook

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._request_hook is not None:
            request = self._request_hook(request)
        response = super().handle_request(request)
        if self._response_hook is None:
            return response
        response.read()
        return self._response_hook(request, response)


def rewrite_message(
    response: httpx.Response, message: Callable[[dict[str, Any], list[str]], str], urls: list[str]
) -> httpx.Response:
    body = json.loads(response.content)
    body["message"] = message(body, urls)
    return httpx.Response(
        response.status_code,
        headers={"Content-Type": "application/json"},
        content=json.dumps(body).encode(),
    )


def rewrite_refusals(message: Callable[[dict[str, Any], list[str]], str]) -> EditingTransport:
    """A transport that rewrites the message of every 400 to an ADD_TO_LIST."""

    def hook(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if response.status_code != 400 or request.url.params.get("action") != "ADD_TO_LIST":
            return response
        urls = json.loads(request.content)["urls"]
        return rewrite_message(response, message, urls)

    return EditingTransport(response_hook=hook)


class TestCategory:
    def test_created_on_first_use_and_reused_ever_after(self, world: World) -> None:
        """One category, ever: created by the first client, found by name by later ones, kept
        by its known id, and found again when a stale id comes back 404."""
        description = category_description("urls", "Malicious URLs")
        with world.client() as first:
            category_id = first.find_or_create_category(CATEGORY, description)
        with world.client() as second:
            assert second.find_or_create_category(CATEGORY, description) == category_id
        with world.client() as third:
            assert third.find_or_create_category(CATEGORY, description, category_id) == category_id
            stale = third.find_or_create_category(CATEGORY, description, "CUSTOM_99")
            assert stale == category_id
        categories = world.zia.categories()
        assert [c["id"] for c in categories] == [category_id]
        assert categories[0]["customCategory"] is True
        assert categories[0]["superCategory"] == "USER_DEFINED"
        assert categories[0]["type"] == "URL_CATEGORY"
        assert "threatshare" in categories[0]["description"]
        assert "urls" in categories[0]["description"]
        assert categories[0]["urls"] == []  # the emulator allows an empty category: no seed
        assert len(world.calls("POST /urlCategories")) == 1

    def test_a_known_id_of_another_category_is_not_used(self, world: World) -> None:
        """An id that now belongs to a category of another name is ignored; the category is
        found (here: created) by name."""
        with world.client() as client:
            other = client.find_or_create_category("Someone Else", "x")
            mine = client.find_or_create_category(CATEGORY, "x", known_id=other)
        assert mine != other
        assert {c["configuredName"] for c in world.zia.categories()} == {"Someone Else", CATEGORY}

    def test_a_create_race_lost_finds_the_winner(self, world: World) -> None:
        """When another worker creates the category between our look-up and our create (ZIA
        answers DUPLICATE_ITEM), the client looks again and uses the winner's category."""
        winner: list[str] = []

        def race(request: httpx.Request) -> httpx.Request:
            creating = request.method == "POST" and request.url.path.endswith("/urlCategories")
            if creating and not winner:
                with world.client() as rival:
                    winner.append(rival.find_or_create_category(CATEGORY, "rival"))
            return request

        with world.client(transport=EditingTransport(request_hook=race)) as client:
            category_id = client.find_or_create_category(CATEGORY, "x")
        assert winner == [category_id]
        assert len(world.zia.categories()) == 1
        assert world.calls("POST /urlCategories") == [200, 409]

    def test_a_refused_create_is_category_refused(self, world: World) -> None:
        """A category ZIA will not create (an invalid name) is a permanent category_refused."""
        with world.client() as client, pytest.raises(CategoryRefused) as caught:
            client.find_or_create_category("bad/name!", "x")
        assert caught.value.code == "category_refused"
        assert caught.value.kind == "permanent"
        assert world.zia.categories() == []


class TestAdd:
    def test_12000_entries_go_in_three_puts_and_activate(self, world: World) -> None:
        """12,000 new entries with batch_size 5,000 take exactly one quota read and three PUTs;
        each accepted batch is reported; nothing is active before activation, all after."""
        news = entries(12_000)
        seen: list[int] = []
        with world.client() as client:
            category_id = client.find_or_create_category(CATEGORY, "x")
            result = add(
                client, category_id, CATEGORY, news, 5000, on_batch=lambda b: seen.append(len(b))
            )
            assert world.zia.active_urls(CATEGORY) == set()
            assert world.zia.staged_urls(CATEGORY) == set(news)
            client.activate()
        assert world.calls(PUT_BUCKET) == [200, 200, 200]
        assert world.calls("GET /urlCategories/urlQuota") == [200]
        assert seen == [5000, 5000, 2000]
        assert result.pushed == news and result.rejected == {}
        assert world.zia.active_urls(CATEGORY) == set(news)
        assert world.zia.activations == 1

    def test_nothing_to_add_makes_no_call(self, world: World) -> None:
        """An add of no entries calls ZIA not at all (docs/design.md#performance: nothing new, no
        call)."""
        with world.client() as client:
            result = add(client, "CUSTOM_01", CATEGORY, [], 100)
        assert result.pushed == [] and result.rejected == {}
        assert world.zia.calls == []

    def test_one_bad_entry_in_1000_is_bisected_in_at_most_21_calls(self, world: World) -> None:
        """When ZIA does not say which entry it refuses, halving isolates one bad entry of
        1,000 in at most 21 extra PUTs, and the other 999 land (and are active after)."""
        news = entries(1000)
        bad = news[613]
        world.zia.invalid_urls.add(bad)
        anonymous = rewrite_refusals(lambda body, urls: "Invalid URL in the request")
        with world.client(transport=anonymous) as client:
            category_id = client.find_or_create_category(CATEGORY, "x")
            result = add(client, category_id, CATEGORY, news, 1000)
            client.activate()
        puts = world.calls(PUT_BUCKET)
        assert 1 <= len(puts) - 1 <= 21
        assert result.rejected == {bad: REFUSED_BY_ZIA}
        assert sorted(result.pushed) == sorted(set(news) - {bad})
        assert world.zia.active_urls(CATEGORY) == set(news) - {bad}

    def test_an_entry_named_by_zia_is_isolated_in_two_calls(self, world: World) -> None:
        """When ZIA's message names the bad entry, it is tried alone and the rest sent at once:
        two extra PUTs."""
        news = entries(1000)
        world.zia.invalid_urls.add(news[5])
        with world.client() as client:
            category_id = client.find_or_create_category(CATEGORY, "x")
            result = add(client, category_id, CATEGORY, news, 1000)
        assert world.calls(PUT_BUCKET) == [400, 400, 200]
        assert result.rejected == {news[5]: REFUSED_BY_ZIA}
        assert len(result.pushed) == 999

    def test_a_wrongly_named_entry_falls_back_to_halving(self, world: World) -> None:
        """If ZIA's message names a good entry, that entry still lands and the bad one is
        found by halving, within 2 + 21 extra PUTs."""
        news = entries(1000)
        world.zia.invalid_urls.add(news[700])
        misleading = rewrite_refusals(lambda body, urls: f"Invalid URL {urls[0]}")
        with world.client(transport=misleading) as client:
            category_id = client.find_or_create_category(CATEGORY, "x")
            result = add(client, category_id, CATEGORY, news, 1000)
        assert result.rejected == {news[700]: REFUSED_BY_ZIA}
        assert world.zia.staged_urls(CATEGORY) == set(news) - {news[700]}
        assert len(world.calls(PUT_BUCKET)) - 1 <= 23

    def test_several_bad_entries_are_all_rejected(self, world: World) -> None:
        """Three bad entries spread over several batches are each rejected; the rest land."""
        news = entries(300)
        bad = {news[0], news[150], news[299]}
        world.zia.invalid_urls.update(bad)
        with world.client() as client:
            category_id = client.find_or_create_category(CATEGORY, "x")
            result = add(client, category_id, CATEGORY, news, 100)
        assert result.rejected == dict.fromkeys(bad, REFUSED_BY_ZIA)
        assert world.zia.staged_urls(CATEGORY) == set(news) - bad

    def test_a_malformed_request_is_not_bisected(self, world: World) -> None:
        """A 400 that blames no entry ("Request body is invalid.") is a permanent zia_request
        after one PUT, not a search through the batch."""

        def break_body(request: httpx.Request) -> httpx.Request:
            if request.method != "PUT":
                return request
            body = json.loads(request.content)
            body["urls"] = "not a list"
            headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
            return httpx.Request(
                request.method,
                request.url,
                headers=headers,
                content=json.dumps(body).encode(),
            )

        with world.client(transport=EditingTransport(request_hook=break_body)) as client:
            category_id = client.find_or_create_category(CATEGORY, "x")
            with pytest.raises(ZiaRejected) as caught:
                add(client, category_id, CATEGORY, entries(50), 50)
        assert caught.value.code == "zia_request"
        assert caught.value.kind == "permanent"
        assert world.calls(PUT_BUCKET) == [400]


class TestQuota:
    def test_a_short_quota_pushes_the_newest_then_halts(self, redis_client: redis.Redis) -> None:
        """With room for 100, the 100 newest of 150 entries are pushed and quota_exhausted
        carries them; the 50 oldest are left out."""
        with make_world(redis_client, url_quota=100) as world:
            news = entries(150)
            with world.client() as client:
                category_id = client.find_or_create_category(CATEGORY, "x")
                landed = Added()
                with pytest.raises(QuotaExhausted) as caught:
                    add(client, category_id, CATEGORY, news, 40, landed=landed)
                assert client.last_quota is not None and client.last_quota.remaining == 100
                assert client.quota().remaining == 0
            assert caught.value.code == "quota_exhausted"
            assert caught.value.kind == "permanent"
            assert landed.pushed == news[:100]
            assert caught.value.pushed == 100 and caught.value.left_out == 50
            assert world.zia.staged_urls(CATEGORY) == set(news[:100])
            assert world.calls(PUT_BUCKET) == [200, 200, 200]

    def test_refused_entries_leave_room_for_others(self, redis_client: redis.Redis) -> None:
        """An entry ZIA refuses takes no quota, so the next entry fills its place."""
        with make_world(redis_client, url_quota=10) as world:
            news = entries(11)
            world.zia.invalid_urls.add(news[3])
            with world.client() as client:
                category_id = client.find_or_create_category(CATEGORY, "x")
                result = add(client, category_id, CATEGORY, news, 50)
            assert result.rejected == {news[3]: REFUSED_BY_ZIA}
            assert world.zia.staged_urls(CATEGORY) == set(news) - {news[3]}

    def test_a_quota_that_shrinks_during_the_push(self, redis_client: redis.Redis) -> None:
        """When ZIA answers a PUT with its quota message (the quota shrank after the read),
        quota_exhausted carries the batches that landed before it."""
        with make_world(redis_client) as world:
            news = entries(30)
            pushed: list[str] = []

            def shrink(batch: list[str]) -> None:
                pushed.extend(batch)
                world.zia.url_quota = len(pushed)

            with world.client() as client:
                category_id = client.find_or_create_category(CATEGORY, "x")
                with pytest.raises(QuotaExhausted) as caught:
                    add(client, category_id, CATEGORY, news, 10, on_batch=shrink)
            assert pushed == news[:10] and caught.value.pushed == 10
            assert caught.value.left_out == 20
            assert world.calls(PUT_BUCKET) == [200, 400]

    def test_quota_and_check_read_the_tenant(self, world: World) -> None:
        """quota() reads used and remaining; check() reports them in one read call."""
        with world.client() as client:
            category_id = client.find_or_create_category(CATEGORY, "x")
            add(client, category_id, CATEGORY, entries(7), 5)
            quota = client.quota()
            assert client.last_quota == quota
            report = client.check()
        assert (quota.used, quota.remaining) == (7, 25_000 - 7)
        assert "7" in report and str(25_000 - 7) in report

    def test_a_deleted_category_is_reported_gone(self, world: World) -> None:
        """A PUT to a category id ZIA no longer has raises a temporary zia_category_gone
        naming the id, after one call, so the caller forgets the id and finds it again."""
        with world.client() as client:
            with pytest.raises(CategoryGone) as caught:
                add(client, "CUSTOM_77", CATEGORY, entries(3), 10)
            assert client.find_or_create_category(CATEGORY, "x") == "CUSTOM_01"
        assert caught.value.code == "zia_category_gone"
        assert caught.value.kind == "temporary"
        assert caught.value.category_id == "CUSTOM_77"
        assert world.calls(PUT_BUCKET) == [404]


class TestRemove:
    def test_remove_takes_entries_out_in_batches(self, world: World) -> None:
        """Removal uses REMOVE_FROM_LIST in batches and returns how many went."""
        news = entries(25)
        with world.client() as client:
            category_id = client.find_or_create_category(CATEGORY, "x")
            add(client, category_id, CATEGORY, news, 100)
            removed = client.remove(category_id, CATEGORY, news[:12], 5)
        assert removed == 12
        assert world.zia.staged_urls(CATEGORY) == set(news[12:])
        assert world.calls(PUT_BUCKET) == [200] * 4


class TestTemporaryFailures:
    @pytest.mark.parametrize(
        ("kind", "status"),
        [
            ("409", 409),
            ("409_barrier", 409),
            ("412", 412),
            ("503", 503),
            ("500", 500),
            ("500_empty", 500),
            ("403_readonly", 403),
            ("drop", 200),
        ],
    )
    def test_temporary_answers_are_retried(self, world: World, kind: str, status: int) -> None:
        """Edit lock, Org barrier (409 or 412), 5xx with or without a body, read-only
        maintenance and a dropped connection are retried, and the batch lands."""
        with world.client() as client:
            category_id = client.find_or_create_category(CATEGORY, "x")
            world.zia.fail_next(kind, path="/urlCategories/{id}")
            result = add(client, category_id, CATEGORY, entries(3), 10)
        # A connection dropped after a 200 status line: the change was made, and the echo of
        # the whole category that follows is never read, so nothing needs retrying.
        expected = [200] if kind == "drop" else [status, 200]
        assert world.calls(PUT_BUCKET) == expected
        assert len(result.pushed) == 3
        assert world.zia.staged_urls(CATEGORY) == set(entries(3))

    @pytest.mark.parametrize("kind", ["429", "429_body"])
    def test_429_waits_what_zia_asks(self, world: World, kind: str) -> None:
        """A 429 is retried after the wait ZIA asked for, in the header or only in the body."""
        world.zia.injected_retry_after = 1
        with world.client() as client:
            world.zia.fail_next(kind)
            start = time.monotonic()
            client.quota()
            elapsed = time.monotonic() - start
        assert world.calls("GET /urlCategories/urlQuota") == [429, 200]
        assert elapsed >= 1.0

    def test_temporary_errors_classified(self, world: World) -> None:
        """When the retries run out, the last temporary error is raised with its own code."""
        expected = {
            "409": (EditLocked, "zia_edit_lock"),
            "503": (UpstreamUnavailable, "upstream_unavailable"),
            "403_readonly": (ReadOnly, "zia_readonly"),
        }
        policy = RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.02, jitter=0.0)
        with world.client(policy=policy) as client:
            category_id = client.find_or_create_category(CATEGORY, "x")
            for kind, (error, code) in expected.items():
                world.zia.fail_next(kind, 2)
                with pytest.raises(error) as caught:
                    add(client, category_id, CATEGORY, entries(2), 10)
                assert caught.value.code == code
                assert caught.value.kind == "temporary"

    def test_a_429_past_the_deadline_is_not_waited_for(self, world: World) -> None:
        """A wait ZIA asks for that would cross the run's deadline ends the call at once with
        rate_limited."""
        world.zia.injected_retry_after = 30
        with world.client(deadline=Deadline.after(5)) as client:
            world.zia.fail_next("429")
            start = time.monotonic()
            with pytest.raises(RateLimited) as caught:
                client.quota()
        assert time.monotonic() - start < 2
        assert caught.value.retry_after == 30

    def test_the_gateway_window_on_a_5xx_is_not_waited_for(self, world: World) -> None:
        """x-ratelimit-reset rides on every real answer: a 503 carrying 50 seconds of it is
        retried after the normal backoff, not after 50 seconds."""

        def long_window(request: httpx.Request, response: httpx.Response) -> httpx.Response:
            response.headers["x-ratelimit-reset"] = "50"
            return response

        with world.client(transport=EditingTransport(response_hook=long_window)) as client:
            world.zia.fail_next("503")
            start = time.monotonic()
            client.quota()
            elapsed = time.monotonic() - start
        assert world.calls("GET /urlCategories/urlQuota") == [503, 200]
        assert elapsed < 5

    def test_the_gateway_window_paces_a_429_without_a_hint(self, world: World) -> None:
        """A 429 that carries no Retry-After waits for x-ratelimit-reset (the window's end)."""

        def no_hint(request: httpx.Request, response: httpx.Response) -> httpx.Response:
            if response.status_code == 429:
                del response.headers["Retry-After"]
                response.headers["x-ratelimit-reset"] = "1"
                return httpx.Response(
                    429, headers=response.headers, json={"message": "Rate Limit exceeded"}
                )
            return response

        with world.client(transport=EditingTransport(response_hook=no_hint)) as client:
            world.zia.fail_next("429")
            start = time.monotonic()
            client.quota()
            elapsed = time.monotonic() - start
        assert world.calls("GET /urlCategories/urlQuota") == [429, 200]
        assert elapsed >= 1.0


class TestRealAnswers:
    def test_a_duplicate_is_not_an_edit_lock(self, world: World) -> None:
        """A 409 DUPLICATE_ITEM to an ADD is a permanent zia_request after one PUT, where a
        409 EDIT_LOCK_NOT_AVAILABLE (or a 409 with no code) would be retried."""

        def duplicate(request: httpx.Request, response: httpx.Response) -> httpx.Response:
            if request.method != "PUT":
                return response
            body = {"code": "DUPLICATE_ITEM", "message": "Item already exists"}
            return httpx.Response(409, headers={"Content-Type": "application/json"}, json=body)

        with world.client(transport=EditingTransport(response_hook=duplicate)) as client:
            category_id = client.find_or_create_category(CATEGORY, "x")
            with pytest.raises(ZiaRejected) as caught:
                add(client, category_id, CATEGORY, entries(4), 10)
        assert (caught.value.code, caught.value.kind) == ("zia_request", "permanent")
        assert world.calls(PUT_BUCKET) == [200]  # the emulator's answer, then rewritten

    def test_a_400_that_names_no_entry_ends_after_two_more_puts(self, world: World) -> None:
        """A 400 "name cannot be null" that both halves of a 16-entry batch get again is a
        permanent zia_request after 3 PUTs, not 31 PUTs and an "ok" run."""
        with world.client() as client:
            category_id = client.find_or_create_category(CATEGORY, "x")
            world.zia.fail_next("400_field", 100, path="/urlCategories/{id}")
            with pytest.raises(ZiaRejected) as caught:
                add(client, category_id, CATEGORY, entries(16), 16)
        assert (caught.value.code, caught.value.kind) == ("zia_request", "permanent")
        assert "name cannot be null" in caught.value.message
        assert world.calls(PUT_BUCKET) == [400, 400, 400]
        assert world.zia.staged_urls(CATEGORY) == set()

    def test_a_400_naming_no_entry_that_one_half_escapes_is_bisected(self, world: World) -> None:
        """When only one half of the first split is refused again, the refusal was about an
        entry after all: it is found and the rest lands."""
        news = entries(16)
        world.zia.invalid_urls.add(news[3])
        anonymous = rewrite_refusals(lambda body, urls: "Invalid URL in the request")
        with world.client(transport=anonymous) as client:
            category_id = client.find_or_create_category(CATEGORY, "x")
            result = add(client, category_id, CATEGORY, news, 16)
        assert result.rejected == {news[3]: REFUSED_BY_ZIA}
        assert world.zia.staged_urls(CATEGORY) == set(news) - {news[3]}

    def test_category_sizes_read_custom_urls_count(self, world: World) -> None:
        """Quota-warning shares come from customUrlsCount, which real listings carry."""
        world.zia.admin_create("Other", ["a.example", "b.example", "c.example"])
        with world.client() as client:
            category_id = client.find_or_create_category(CATEGORY, "x")
            add(client, category_id, CATEGORY, entries(2), 10)
            assert client.category_sizes() == [("Other", 3), (CATEGORY, 2)]


class TestActivation:
    @pytest.mark.parametrize("kind", ["403", "401"])
    def test_a_refused_activation_is_activation_refused(self, world: World, kind: str) -> None:
        """A 403, or a 401 that survives a fresh token, to POST /status/activate is a permanent
        activation_refused, not a retry."""
        world.zia.fail_next(kind, 10, path="/status/activate")
        with world.client() as client, pytest.raises(ActivationRefused) as caught:
            client.activate()
        assert (caught.value.code, caught.value.kind) == ("activation_refused", "permanent")
        statuses = world.calls("POST /status/activate")
        assert statuses == ([403] if kind == "403" else [401, 401, 401])
        assert world.zia.activations == 0

    def test_maintenance_during_activation_is_temporary(self, world: World) -> None:
        """A read-only 403 to the activation is retried, then activates."""
        world.zia.fail_next("403_readonly", path="/status/activate")
        with world.client() as client:
            client.activate()
        assert world.calls("POST /status/activate") == [403, 200]
        assert world.zia.activations == 1


class TestPermanentFailures:
    def test_other_403_is_forbidden_at_once(self, world: World) -> None:
        """A 403 that is not maintenance is a permanent zia_forbidden, never retried."""
        with world.client() as client:
            world.zia.fail_next("403")
            with pytest.raises(Forbidden) as caught:
                client.quota()
        assert caught.value.code == "zia_forbidden"
        assert caught.value.kind == "permanent"
        assert world.calls("GET /urlCategories/urlQuota") == [403]


class TestAuth:
    def test_a_401_gets_exactly_one_fresh_token(self, world: World) -> None:
        """One 401 costs one more token and the call succeeds without waiting."""
        with world.client() as client:
            client.quota()
            assert world.idp.token_requests == 1
            world.zia.fail_next("401")
            start = time.monotonic()
            client.quota()
        assert world.idp.token_requests == 2
        assert time.monotonic() - start < 0.2
        assert world.calls("GET /urlCategories/urlQuota") == [200, 401, 200]

    def test_expired_tokens_are_renewed(self, world: World) -> None:
        """A token the IdP has expired is replaced on the 401 it earns."""
        with world.client() as client:
            client.quota()
            world.idp.expire_tokens()
            client.quota()
        assert world.idp.token_requests == 2

    def test_a_revoked_client_is_permanent_zia_auth(self, world: World) -> None:
        """A revoked API client gets 401 from ZIA, then invalid_client from the IdP: a
        permanent zia_auth, without the JWKS wait."""
        with world.client(reauth_wait=5) as client:
            client.quota()
            world.idp.revoke(CLIENT_ID)
            start = time.monotonic()
            with pytest.raises(AuthError) as caught:
                client.quota()
        assert time.monotonic() - start < 2
        assert caught.value.code == "zia_auth"
        assert caught.value.kind == "permanent"
        assert SECRET not in str(caught.value)

    def test_a_persisting_401_waits_then_succeeds(self, world: World) -> None:
        """A 401 that persists after a fresh token is retried once more after reauth_wait
        (ZIA caches the IdP's keys), with a third token."""
        with world.client(reauth_wait=0.3) as client:
            client.quota()
            world.zia.fail_next("401", 2)
            start = time.monotonic()
            client.quota()
        assert time.monotonic() - start >= 0.3
        assert world.idp.token_requests == 3
        assert world.calls("GET /urlCategories/urlQuota") == [200, 401, 401, 200]

    def test_a_401_after_the_wait_is_permanent(self, world: World) -> None:
        """Three 401s in a row (the last after reauth_wait) are a permanent zia_auth."""
        with world.client(reauth_wait=0.1) as client:
            world.zia.fail_next("401", 3)
            with pytest.raises(AuthError) as caught:
                client.quota()
        assert caught.value.code == "zia_auth"
        assert world.calls("GET /urlCategories/urlQuota") == [401, 401, 401]

    def test_a_wait_that_does_not_fit_is_temporary(self, world: World) -> None:
        """When reauth_wait would cross the deadline, the persisting 401 is left for the next
        run as a temporary error instead of being called permanent untested."""
        with world.client(reauth_wait=60, deadline=Deadline.after(5)) as client:
            world.zia.fail_next("401", 2)
            with pytest.raises(TemporaryError) as caught:
                client.quota()
        assert caught.value.code == "zia_auth_pending"

    def test_a_wrong_secret_is_permanent(self, world: World) -> None:
        """A secret the IdP refuses is zia_auth and ZIA is never called."""
        tenant = world.tenant(client_secret=SecretStr("wrong"))
        with world.client(tenant) as client, pytest.raises(AuthError) as caught:
            client.quota()
        assert caught.value.code == "zia_auth"
        assert world.zia.calls == []

    def test_a_shared_credential_is_reused_across_clients(self, world: World) -> None:
        """A credential passed in keeps its token from one client (run) to the next."""
        tenant = world.tenant()
        credential = ClientCredentials(
            token_url=tenant.token_url or "",
            client_id=CLIENT_ID,
            client_secret=SecretStr(SECRET),
            error_code="zia_auth",
            what="ZIA token endpoint",
            scope=SCOPE,
        )
        for _ in range(3):
            with world.client(tenant, credential=credential) as client:
                client.quota()
        credential.close()
        assert world.idp.token_requests == 1

    def test_basic_client_authentication(self, world: World) -> None:
        """token_auth = client_secret_basic sends the client's credentials by HTTP Basic."""
        with world.client(world.tenant(token_auth="client_secret_basic")) as client:
            assert client.quota().used == 0

    def test_oneapi_uses_the_audience_and_the_zia_prefix(self, world: World) -> None:
        """OneAPI asks for the api.zscaler.com audience and calls under /zia/api/v1."""
        tenant = world.tenant(
            "oneapi", client_id="oneapi", scope=None, api_base=f"{world.zia_url}/zia/api/v1"
        )
        with world.client(tenant) as client:
            category_id = client.find_or_create_category(CATEGORY, "x")
            add(client, category_id, CATEGORY, entries(2), 10)
        assert all(call.path.startswith("/zia/api/v1/") for call in world.zia.calls)
        assert world.zia.staged_urls(CATEGORY) == set(entries(2))


class TestLegacy:
    def test_login_goes_through_the_limiter(self, world: World) -> None:
        """The legacy login is one rate-limited call and its session serves the next calls."""
        with world.client(world.tenant("legacy")) as client:
            client.quota()
            client.quota()
        assert world.calls("POST /authenticatedSession") == [200]
        key = keys.tenant_limit("t1", bucket_for("POST", "/api/v1/authenticatedSession"))
        assert world.redis.zcard(key) == 1

    def test_a_session_idle_too_long_is_renewed_before_use(self, world: World) -> None:
        """A session idle longer than session_idle is replaced before the call, with no 401."""
        tenant = world.tenant("legacy", session_idle="0.2s")
        with world.client(tenant) as client:
            client.quota()
            time.sleep(0.3)
            client.quota()
        assert world.calls("POST /authenticatedSession") == [200, 200]
        assert 401 not in world.calls("GET /urlCategories/urlQuota")

    def test_a_session_zia_ended_is_renewed_on_401(self, world: World) -> None:
        """When ZIA ends the session (SESSION_NOT_VALID), the client logs in again and the call
        succeeds."""
        with world.client(world.tenant("legacy")) as client:
            client.quota()
            world.zia.expire_sessions()
            client.quota()
        assert world.calls("POST /authenticatedSession") == [200, 200]
        assert world.calls("GET /urlCategories/urlQuota") == [200, 401, 200]

    def test_a_wrong_password_is_permanent(self, world: World) -> None:
        """A login ZIA refuses is a permanent zia_auth naming no secret."""
        tenant = world.tenant("legacy", password=SecretStr("nope"))
        with world.client(tenant) as client, pytest.raises(AuthError) as caught:
            client.quota()
        assert caught.value.code == "zia_auth"
        assert "nope" not in str(caught.value) and API_KEY not in str(caught.value)


class TestLimits:
    def test_every_call_is_limited_and_zia_never_says_429(self, limited: World) -> None:
        """With ZIA's real limits on both sides, a burst of reads, pushes and activations
        (through the legacy login too) gets no 429 and exceeds no limit."""
        with limited.client(limited.tenant("legacy")) as client:
            category_id = client.find_or_create_category(CATEGORY, "x")
            for index in range(3):
                add(client, category_id, CATEGORY, entries(5, f"b{index}-"), 5)
            client.activate()
            client.activate()
        assert limited.zia.count_429 == 0
        assert limited.zia.limit_violations() == []
        assert len(limited.calls(PUT_BUCKET)) == 3
        key = keys.tenant_limit("t1", "POST /status/activate")
        assert limited.redis.zcard(key) == 2


class TestLogs:
    def test_no_secret_token_or_entry_in_logs(self, world: World) -> None:
        """Log lines of a run with retries, re-logins and bisection carry counts only."""
        news = entries(20)
        world.zia.invalid_urls.add(news[4])
        with structlog.testing.capture_logs() as lines, world.client() as client:
            category_id = client.find_or_create_category(CATEGORY, "x")
            world.zia.fail_next("401")
            world.zia.fail_next("503", path="/urlCategories/{id}")
            add(client, category_id, CATEGORY, news, 10)
            client.activate()
        text = json.dumps(lines, default=str)
        assert lines, "the run logs something"
        assert SECRET not in text and "Bearer" not in text
        assert not any(entry in text for entry in news)
        assert any(line.get("event") == "zia_added" for line in lines)
