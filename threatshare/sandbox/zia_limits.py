"""ZIA's documented API rate limits (docs/design.md#limits-of-zia) and a strict sliding-window
enforcer.

Limits are per tenant and per endpoint: a *bucket* is a method and a path template, such as
``PUT /urlCategories/{id}``. Each bucket has a burst limit and an hourly ceiling. A window is
the half-open interval ``(t - length, t]``, so a client that spaces its calls by exactly the
documented interval is never refused, and one call more than the limit within any window is.

``time_scale`` divides the per-minute and hourly windows (``time_scale=60`` turns "400/hour"
into 400 per minute) so tests can reach them; per-second windows are never scaled.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass

_UNIT_SECONDS = {"SECOND": 1.0, "MINUTE": 60.0, "HOUR": 3600.0}


@dataclass(frozen=True)
class Limit:
    """At most ``count`` calls per ``unit`` (``SECOND``, ``MINUTE`` or ``HOUR``)."""

    count: int
    unit: str

    def window(self, time_scale: float) -> float:
        seconds = _UNIT_SECONDS[self.unit]
        return seconds if self.unit == "SECOND" else seconds / time_scale

    @property
    def label(self) -> str:
        return f"{self.count}/{self.unit}"


LIGHT = (Limit(2, "SECOND"), Limit(1000, "HOUR"))  # GET
MEDIUM = (Limit(1, "SECOND"), Limit(400, "HOUR"))  # POST, PUT
HEAVY = (Limit(1, "MINUTE"), Limit(4, "HOUR"))  # DELETE
ACTIVATION = (Limit(10, "MINUTE"), Limit(40, "HOUR"))

#: Buckets whose limits differ from their method's weight (RLSUM rows).
_SPECIFIC = {
    "POST /status/activate": ACTIVATION,
    "POST /authenticatedSession": LIGHT,
    "DELETE /authenticatedSession": LIGHT,
}


def limits_for(bucket: str) -> tuple[Limit, ...]:
    """The documented limits of a bucket (``"<METHOD> <path template>"``)."""
    if bucket in _SPECIFIC:
        return _SPECIFIC[bucket]
    method = bucket.partition(" ")[0]
    if method == "GET":
        return LIGHT
    if method == "DELETE":
        return HEAVY
    return MEDIUM


@dataclass(frozen=True)
class Call:
    """One request the emulator answered."""

    method: str
    path: str
    status: int
    #: ``time.monotonic()`` when the request was admitted (the instant limits are checked at).
    at: float
    bucket: str


def counts_toward_limits(status: int) -> bool:
    """Refused calls (429) count toward nothing, and unauthenticated ones (401) belong to no
    tenant; every other answered call uses up the bucket's allowance."""
    return status not in (401, 429)


@dataclass(frozen=True)
class Refusal:
    """Why a call was refused: the limit it would exceed and the seconds until a slot frees."""

    limit: Limit
    retry_after: int

    @property
    def body(self) -> dict[str, str]:
        return {
            "message": f"Rate Limit ({self.limit.label}) exceeded",
            "Retry-After": f"{self.retry_after} seconds",
        }


class SlidingWindows:
    """Admission of calls per bucket; keeps at most ``count`` timestamps per limit."""

    def __init__(self, time_scale: float = 1.0) -> None:
        self.time_scale = time_scale
        self._admitted: dict[tuple[str, Limit], deque[float]] = defaultdict(deque)

    def admit(self, bucket: str, now: float) -> Refusal | None:
        """Record a call to ``bucket`` at ``now`` and return None, or refuse it (unrecorded)."""
        refusal: Refusal | None = None
        limits = limits_for(bucket)
        for limit in limits:
            window = limit.window(self.time_scale)
            admitted = self._admitted[(bucket, limit)]
            while admitted and admitted[0] <= now - window:
                admitted.popleft()
            if len(admitted) >= limit.count:
                wait = math.ceil(admitted[0] + window - now)
                if refusal is None or wait > refusal.retry_after:
                    refusal = Refusal(limit, max(1, wait))
        if refusal is None:
            for limit in limits:
                self._admitted[(bucket, limit)].append(now)
        return refusal


def violations(calls: Iterable[Call], time_scale: float = 1.0) -> list[str]:
    """Calls that were answered although they exceeded a documented limit, re-checked from
    the call log alone (independently of :class:`SlidingWindows`)."""
    times: dict[str, list[float]] = defaultdict(list)
    for call in calls:
        if counts_toward_limits(call.status):
            times[call.bucket].append(call.at)
    found: list[str] = []
    for bucket, stamps in sorted(times.items()):
        stamps.sort()
        for limit in limits_for(bucket):
            window = limit.window(time_scale)
            first = 0
            for last, at in enumerate(stamps):
                while stamps[first] <= at - window:
                    first += 1
                inside = last - first + 1
                if inside > limit.count:
                    found.append(
                        f"{bucket}: {inside} calls within {window:g}s exceed {limit.label}"
                        f" (call at t={at:.3f})"
                    )
    return found
