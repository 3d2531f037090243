"""Fleet-wide rate limits of a ZIA tenant, kept in Redis.

ZIA limits calls per tenant and per endpoint (docs/design.md#limits-of-zia): a short burst window
and an hourly ceiling each. Every worker and process that shares a tenant shares its budget, so the
budget lives in Redis: one sorted set per (tenant, endpoint) logs the time of each recent call, and
a Lua script checks every window and records the call in one atomic step. The script reads
Redis ``TIME``, so all processes on all machines use one clock.

When a call is not allowed yet the script answers how long to wait; :meth:`RateLimiter.acquire`
sleeps that long and asks again, and gives up with :class:`~threatshare.errors.RateLimited`
when the wait would cross the run's deadline.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx2 as httpx
import redis
import structlog

from threatshare import keys
from threatshare.errors import RateLimited, redis_errors
from threatshare.http import Deadline

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Limit:
    """At most ``calls`` calls in any window of ``per`` seconds."""

    calls: int
    per: float

    def __post_init__(self) -> None:
        if self.calls < 1 or self.per <= 0:
            raise ValueError("a limit needs at least one call in a positive window")


HOUR = 3600.0
MINUTE = 60.0

# ZIA's weights (docs/design.md#limits-of-zia); Zscaler says the numbers are "subject to change",
# so they are data here and nowhere else. Where two sources differ the stricter number is used.
LIGHT = (Limit(2, 1.0), Limit(1000, HOUR))
MEDIUM = (Limit(1, 1.0), Limit(400, HOUR))
HEAVY = (Limit(1, MINUTE), Limit(4, HOUR))
#: ZIA's activations per tenant per hour: the budget the fleet's activation pacing is shaped by.
ACTIVATIONS_PER_HOUR = 40
ACTIVATE = (Limit(10, MINUTE), Limit(ACTIVATIONS_PER_HOUR, HOUR))
REVIEW = (Limit(10, MINUTE), Limit(40, HOUR))

#: Limits of endpoints that differ from the weight of their method.
ZIA_LIMITS: Mapping[str, tuple[Limit, ...]] = {
    "POST /status/activate": ACTIVATE,
    "POST /urlCategories/review/domains": REVIEW,
    "PUT /urlCategories/review/domains": REVIEW,
}
#: Limits by method for every endpoint not named in :data:`ZIA_LIMITS`.
ZIA_METHOD_LIMITS: Mapping[str, tuple[Limit, ...]] = {
    "GET": LIGHT,
    "POST": MEDIUM,
    "PUT": MEDIUM,
    "PATCH": MEDIUM,
    "DELETE": HEAVY,
}

#: Added to every window: our clock reads the time before the request leaves, ZIA's when it
#: arrives, so a window slightly longer than ZIA's absorbs the difference in delays (network
#: jitter, a busy host). A quarter of a second: a busy 2-core host running a whole fleet showed
#: one call in thousands delayed by more than a tenth of one, enough for a 429 when calls to one
#: tenant come back to back (a tenant's round, docs/design.md#pacing). Costs a fifth of the
#: per-second rate (a 100-PUT backlog takes 125 s instead of 110), nothing of the hourly one.
DEFAULT_MARGIN = 0.25

_API_PREFIX = re.compile(r"^.*?/api/v1(?=/|$)")
# Fixed path segments of the ZIA API are lowerCamelCase words (urlCategories, urlQuota, lite,
# activate); anything else in a path (CUSTOM_01, NEWS_AND_MEDIA, 1234) is an identifier.
_FIXED_SEGMENT = re.compile(r"^[a-z][A-Za-z]*$")


def endpoint(path: str) -> str:
    """The endpoint template of a request path: ``/api/v1/urlCategories/CUSTOM_01?x`` ->
    ``/urlCategories/{id}``. Both API prefixes (``/api/v1``, ``/zia/api/v1``) are dropped."""
    path = _API_PREFIX.sub("", path.split("?", 1)[0])
    segments = [s if _FIXED_SEGMENT.match(s) else "{id}" for s in path.split("/") if s]
    return "/" + "/".join(segments)


def bucket_for(method: str, path: str) -> str:
    """The rate-limit bucket of one call, e.g. ``"PUT /urlCategories/{id}"``."""
    return f"{method.upper()} {endpoint(path)}"


def least_seconds(calls: int, limits: tuple[Limit, ...]) -> float:
    """The shortest time ``calls`` calls can take under ``limits`` from an unused budget:
    what a progress display can promise at best (the first call of each window is free)."""
    if calls <= 1:
        return 0.0
    return max((calls - 1) // limit.calls * limit.per for limit in limits)


def default_limits(method: str, path: str) -> tuple[Limit, ...]:
    """ZIA's limits of one call, from the tables above."""
    bucket = bucket_for(method, path)
    return ZIA_LIMITS.get(bucket) or ZIA_METHOD_LIMITS.get(method.upper(), MEDIUM)


# KEYS[1]: sorted set of one tenant's recent calls to one endpoint, scored in microseconds.
# ARGV[1]: a unique suffix for this call's member; ARGV[2..]: pairs (calls, window in µs).
# Returns 0 when the call was recorded, else the microseconds until it would be allowed.
_ACQUIRE = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local longest = 0
local wait = 0
for i = 2, #ARGV, 2 do
  local calls = tonumber(ARGV[i])
  local window = tonumber(ARGV[i + 1])
  if window > longest then longest = window end
  local since = now - window + 1
  local used = redis.call('ZCOUNT', KEYS[1], since, '+inf')
  if used >= calls then
    local first = redis.call('ZRANGEBYSCORE', KEYS[1], since, '+inf', 'WITHSCORES',
                             'LIMIT', used - calls, 1)
    local free_in = tonumber(first[2]) + window - now
    if free_in > wait then wait = free_in end
  end
end
if wait > 0 then return math.ceil(wait) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - longest)
redis.call('ZADD', KEYS[1], now, string.format('%.0f-%s', now, ARGV[1]))
redis.call('PEXPIRE', KEYS[1], math.ceil(longest / 1000) + 1000)
return 0
"""


class RateLimiter:
    """The shared call budget of one ZIA tenant; every ZIA call asks it first.

    ``time_scale`` divides minute and hour windows (never per-second ones), as the emulator's
    knob of the same name does, so tests can reach hourly limits. ``limits`` and
    ``method_limits`` replace ZIA's table (tests use fast ones).
    """

    def __init__(
        self,
        redis_client: redis.Redis,
        tenant_id: str,
        *,
        time_scale: float = 1.0,
        margin: float = DEFAULT_MARGIN,
        limits: Mapping[str, tuple[Limit, ...]] = ZIA_LIMITS,
        method_limits: Mapping[str, tuple[Limit, ...]] = ZIA_METHOD_LIMITS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self._redis = redis_client
        self._tenant = tenant_id
        self._time_scale = time_scale
        self._margin = margin
        self._limits = limits
        self._method_limits = method_limits
        self._sleep = sleep
        self._script = redis_client.register_script(_ACQUIRE)

    def limits_for(self, bucket: str) -> tuple[Limit, ...]:
        """The limits of one bucket, before scaling."""
        if bucket in self._limits:
            return self._limits[bucket]
        method = bucket.split(" ", 1)[0]
        return self._method_limits.get(method, MEDIUM)

    def _windows_us(self, bucket: str) -> list[int]:
        args: list[int] = []
        for limit in self.limits_for(bucket):
            per = limit.per if limit.per <= 1.0 else limit.per / self._time_scale
            args += [limit.calls, round((per + self._margin) * 1_000_000)]
        return args

    def try_acquire(self, method: str, path: str) -> float:
        """Record one call if every window allows it and return 0.0; otherwise record nothing
        and return the seconds until it would be allowed."""
        bucket = bucket_for(method, path)
        with redis_errors("rate limiter"):
            wait_us = self._script(
                keys=[keys.tenant_limit(self._tenant, bucket)],
                args=[uuid.uuid4().hex, *self._windows_us(bucket)],
            )
        return int(wait_us) / 1_000_000

    def note_rate_limited(self) -> None:
        """Count one 429 answer of the tenant (a metric, docs/design.md#operations-endpoint);
        best effort, as the count must never fail the call it describes. Only 429s pay this round
        trip."""
        with contextlib.suppress(redis.RedisError):
            self._redis.hincrby(keys.tenant_stats(self._tenant), "rate_limited", 1)

    def acquire(self, method: str, path: str, deadline: Deadline) -> None:
        """Wait until the tenant's budget allows this call, and record it.

        Raises :class:`RateLimited` (temporary) when the next free slot lies past ``deadline``."""
        waited = 0.0
        while (wait := self.try_acquire(method, path)) > 0:
            if wait >= deadline.remaining():
                raise RateLimited(
                    f"ZIA rate limit of {bucket_for(method, path)}: the next free slot is "
                    f"{wait:.1f}s away, past the run's deadline",
                    retry_after=wait,
                )
            self._sleep(wait)
            waited += wait
        if waited:
            log.debug("rate_limit_waited", bucket=bucket_for(method, path), wait_s=round(waited, 3))


def limit_requests(
    http: httpx.Client, limiter: RateLimiter, deadline: Callable[[], Deadline]
) -> None:
    """Make every request ``http`` sends wait for the tenant's budget first (and count in
    it); ``deadline`` gives the deadline of the wait of each request. Each 429 answer is
    counted for the operations endpoint (docs/design.md#operations-endpoint)."""

    def wait_for_budget(request: httpx.Request) -> None:
        limiter.acquire(request.method, request.url.path, deadline())

    def count_refusal(response: httpx.Response) -> None:
        if response.status_code == 429:
            limiter.note_rate_limited()

    http.event_hooks = {"request": [wait_for_budget], "response": [count_refusal]}
