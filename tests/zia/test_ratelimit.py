"""The fleet-wide ZIA rate limiter, against a real Redis."""

from __future__ import annotations

import time

import pytest
import redis

from threatshare import keys
from threatshare.errors import RateLimited, StoreUnavailable
from threatshare.http import Deadline
from threatshare.zia.ratelimit import (
    DEFAULT_MARGIN,
    ZIA_LIMITS,
    Limit,
    RateLimiter,
    bucket_for,
    endpoint,
)

PATH = "/api/v1/urlCategories/CUSTOM_01"
# Three calls per half second: fast enough for tests, slow enough to measure.
FAST = {"GET": (Limit(3, 0.5),), "PUT": (Limit(1, 0.3),)}


class RecordingSleep:
    """A real sleep that also remembers how long each wait was."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        time.sleep(seconds)


def limiter(client: redis.Redis, tenant: str = "t1", **kwargs: object) -> RateLimiter:
    kwargs.setdefault("method_limits", FAST)
    kwargs.setdefault("limits", {})
    return RateLimiter(client, tenant, **kwargs)  # type: ignore[arg-type]


class TestBuckets:
    def test_identifiers_become_placeholders(self) -> None:
        """Category ids, predefined category names and numbers map to one ``{id}`` endpoint."""
        assert endpoint("/api/v1/urlCategories/CUSTOM_01") == "/urlCategories/{id}"
        assert endpoint("/api/v1/urlCategories/NEWS_AND_MEDIA") == "/urlCategories/{id}"
        assert endpoint("/api/v1/urlCategories/1234?action=ADD_TO_LIST") == "/urlCategories/{id}"

    def test_fixed_paths_stay_and_prefixes_go(self) -> None:
        """Fixed endpoints keep their name under both the legacy and the OneAPI prefix."""
        assert endpoint("/api/v1/urlCategories/urlQuota") == "/urlCategories/urlQuota"
        assert endpoint("/zia/api/v1/urlCategories/lite") == "/urlCategories/lite"
        assert bucket_for("post", "/zia/api/v1/status/activate") == "POST /status/activate"
        assert bucket_for("PUT", PATH) == "PUT /urlCategories/{id}"

    def test_table_has_the_documented_activation_limits(self) -> None:
        """Activation is limited to 10 a minute and 40 an hour (docs/design.md#limits-of-zia)."""
        assert ZIA_LIMITS["POST /status/activate"] == (Limit(10, 60.0), Limit(40, 3600.0))

    def test_method_weights_apply_elsewhere(self, redis_client: redis.Redis) -> None:
        """GETs are light (2/s, 1000/h), PUTs medium (1/s, 400/h), DELETEs heavy (1/min, 4/h)."""
        real = RateLimiter(redis_client, "t1")
        assert real.limits_for(bucket_for("GET", PATH)) == (Limit(2, 1.0), Limit(1000, 3600.0))
        assert real.limits_for(bucket_for("PUT", PATH)) == (Limit(1, 1.0), Limit(400, 3600.0))
        assert real.limits_for(bucket_for("DELETE", PATH)) == (Limit(1, 60.0), Limit(4, 3600.0))

    def test_a_limit_needs_a_positive_window(self) -> None:
        """A limit of no calls or an empty window is refused at construction."""
        with pytest.raises(ValueError):
            Limit(0, 1.0)
        with pytest.raises(ValueError):
            Limit(1, 0.0)


class TestWindow:
    def test_n_calls_pass_and_the_next_waits_for_the_oldest(
        self, redis_client: redis.Redis
    ) -> None:
        """Three calls in a 0.5 s window pass at once; the fourth is told to wait until the
        first leaves the window (plus the margin), and nothing is recorded for it."""
        rl = limiter(redis_client)
        start = time.monotonic()
        assert [rl.try_acquire("GET", PATH) for _ in range(3)] == [0.0, 0.0, 0.0]
        wait = rl.try_acquire("GET", PATH)
        elapsed = time.monotonic() - start
        assert 0.5 + DEFAULT_MARGIN - elapsed - 0.01 <= wait <= 0.5 + DEFAULT_MARGIN
        key = keys.tenant_limit("t1", bucket_for("GET", PATH))
        assert redis_client.zcard(key) == 3

    def test_acquire_sleeps_the_wait_then_records(self, redis_client: redis.Redis) -> None:
        """``acquire`` of the fourth call sleeps until the window has room, then passes."""
        sleep = RecordingSleep()
        rl = limiter(redis_client, sleep=sleep)
        deadline = Deadline.after(5)
        start = time.monotonic()
        for _ in range(4):
            rl.acquire("GET", PATH, deadline)
        elapsed = time.monotonic() - start
        assert sleep.waits, "the fourth call must have waited"
        assert elapsed >= 0.5 + DEFAULT_MARGIN - 0.01
        assert elapsed < 1.0

    def test_calls_are_spread_at_the_rate(self, redis_client: redis.Redis) -> None:
        """Seven calls at three per half second take two full windows, no less."""
        rl = limiter(redis_client)
        deadline = Deadline.after(5)
        start = time.monotonic()
        for _ in range(7):
            rl.acquire("GET", PATH, deadline)
        assert 2 * 0.5 <= time.monotonic() - start < 2.0

    def test_every_window_of_an_endpoint_counts(self, redis_client: redis.Redis) -> None:
        """With a burst and a longer ceiling, the ceiling makes a later call wait for the
        oldest call of the longer window."""
        rl = limiter(redis_client, method_limits={"PUT": (Limit(2, 0.1), Limit(3, 0.6))})
        deadline = Deadline.after(5)
        start = time.monotonic()
        for _ in range(3):
            rl.acquire("PUT", PATH, deadline)
        assert time.monotonic() - start < 0.4
        wait = rl.try_acquire("PUT", PATH)
        assert wait > 0.2  # the burst window alone would allow it in < 0.15 s

    def test_time_scale_shortens_minute_and_hour_windows_only(
        self, redis_client: redis.Redis
    ) -> None:
        """At time_scale 60, activation's 10 a minute become 10 a second, while the per-second
        limit of PUT stays one a second."""
        rl = RateLimiter(redis_client, "t1", time_scale=60)
        assert [rl.try_acquire("POST", "/api/v1/status/activate") for _ in range(10)] == [0.0] * 10
        assert 0.9 < rl.try_acquire("POST", "/api/v1/status/activate") <= 1.0 + DEFAULT_MARGIN
        assert rl.try_acquire("PUT", PATH) == 0.0
        assert 0.9 < rl.try_acquire("PUT", PATH) <= 1.0 + DEFAULT_MARGIN

    def test_old_calls_are_trimmed_and_the_key_expires(self, redis_client: redis.Redis) -> None:
        """The log keeps only calls inside the longest window and expires when idle."""
        rl = limiter(redis_client, method_limits={"GET": (Limit(100, 0.1),)})
        key = keys.tenant_limit("t1", bucket_for("GET", PATH))
        for _ in range(5):
            rl.try_acquire("GET", PATH)
        window = 0.1 + DEFAULT_MARGIN
        time.sleep(window + 0.1)
        rl.try_acquire("GET", PATH)
        assert redis_client.zcard(key) == 1
        assert 0 < redis_client.pttl(key) <= 1000 + round(window * 1000)


class TestSharing:
    def test_two_limiters_on_one_tenant_share_the_budget(self, redis_url: str) -> None:
        """Two limiters (two connections, as two workers) on one tenant get three calls
        together per window, not three each."""
        with redis.Redis.from_url(redis_url) as one, redis.Redis.from_url(redis_url) as two:
            a, b = limiter(one), limiter(two)
            answers = [a.try_acquire("GET", PATH), b.try_acquire("GET", PATH)]
            answers += [a.try_acquire("GET", PATH), b.try_acquire("GET", PATH)]
        assert answers[:3] == [0.0, 0.0, 0.0]
        assert answers[3] > 0.3

    def test_different_tenants_do_not_share(self, redis_client: redis.Redis) -> None:
        """A tenant's exhausted budget does not slow another tenant down."""
        first, second = limiter(redis_client, "t1"), limiter(redis_client, "t2")
        for _ in range(3):
            first.try_acquire("GET", PATH)
        assert first.try_acquire("GET", PATH) > 0
        assert [second.try_acquire("GET", PATH) for _ in range(3)] == [0.0, 0.0, 0.0]

    def test_endpoints_do_not_share(self, redis_client: redis.Redis) -> None:
        """Each endpoint has its own budget: a busy category does not hold up the quota read."""
        rl = limiter(redis_client)
        for _ in range(3):
            rl.try_acquire("GET", PATH)
        assert rl.try_acquire("GET", PATH) > 0
        assert rl.try_acquire("GET", "/api/v1/urlCategories/urlQuota") == 0.0


class TestFailure:
    def test_a_wait_past_the_deadline_is_rate_limited(self, redis_client: redis.Redis) -> None:
        """When the next free slot is past the deadline, acquire raises a temporary
        ``rate_limited`` error with the wait, without sleeping."""
        sleep = RecordingSleep()
        rl = limiter(redis_client, sleep=sleep)
        for _ in range(3):
            rl.acquire("GET", PATH, Deadline.after(5))
        with pytest.raises(RateLimited) as caught:
            rl.acquire("GET", PATH, Deadline.after(0.2))
        assert caught.value.code == "rate_limited"
        assert caught.value.kind == "temporary"
        assert caught.value.retry_after is not None and caught.value.retry_after > 0.2
        assert sleep.waits == []

    def test_redis_unreachable_is_a_temporary_store_error(self) -> None:
        """Without Redis, acquiring raises ``store_unavailable`` (the run is repeated)."""
        from threatshare.embedded import free_port

        dead = redis.Redis(
            host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5, retry=None
        )
        with pytest.raises(StoreUnavailable) as caught:
            limiter(dead).acquire("GET", PATH, Deadline.after(2))
        dead.close()
        assert caught.value.code == "store_unavailable"

    def test_a_scale_must_be_positive(self, redis_client: redis.Redis) -> None:
        """A zero time_scale is refused."""
        with pytest.raises(ValueError):
            RateLimiter(redis_client, "t1", time_scale=0)
