"""A simulated year of one instance (docs/design.md#performance, docs/design.md#expiry): expiry
keeps the category at its steady size, Redis memory stays flat, and expiring E entries costs ⌈E /
batch_size⌉ PUTs.

Time is an input of the sync (``Runtime.now``), so the year runs in minutes: one run a day,
each day ``rate`` new threats plus ``resightings`` records of entries first seen in the last
week (an entry clicked again keeps its place). A model of the same records computes, day by
day, which entries must be in the category (last seen within ``expire_after``) and how many
must expire; the category in the ZIA emulator must match it exactly every day.

ZIA's rate limits are not the subject here (the fleet benchmark covers them): the emulator
enforces none and the product's limiter is given loose ones, so a day costs what its calls
cost, not ZIA's pacing.
"""

from __future__ import annotations

import math
import random
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from bench.common import BENCH_POLICY, Stopwatch, load, write_config
from threatshare import keys
from threatshare.runtime import Runtime
from threatshare.sandbox.mimecast_logs import url_log
from threatshare.sandbox.world import Sandbox
from threatshare.sync import sync_instance
from threatshare.sync.activation import activate_pending
from threatshare.zia.ratelimit import Limit

CATEGORY = "Bench Year"
LOOSE = {method: (Limit(1000, 1.0),) for method in ("GET", "POST", "PUT", "DELETE")}
#: The default audit_retention, in days: the trail is flat once it has passed.
AUDIT_RETENTION_DAYS = 90
#: Redis in all (ledger, provenance, audit trail, state) stays under this.
MEMORY_LIMIT = 100 * 1024 * 1024
RESIGHT_SPAN = 7  # days: re-sightings are of entries first seen this recently


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def _day_records(
    day: int, start: datetime, rate: int, resightings: int, rng: random.Random
) -> list[tuple[str, datetime]]:
    """The day's records: ``rate`` new entries and ``resightings`` of recent ones, spread over
    20 hours from a minute into the day (clear of the window's edges, which Mimecast's clock,
    read from whole-second Date headers, places to within a second, and of the next window's
    overlap)."""
    names = [f"d{day}-n{i}.year-bench.example/p" for i in range(rate)]
    if day:
        for _ in range(resightings):
            back = rng.randint(max(0, day - RESIGHT_SPAN), day - 1)
            names.append(f"d{back}-n{rng.randrange(rate)}.year-bench.example/p")
    spacing = timedelta(hours=20) / max(1, len(names))
    base = start + timedelta(days=day, minutes=1)
    return [(name, base + spacing * i) for i, name in enumerate(names)]


def _bytes(client: redis.Redis, key: str) -> int:
    """Redis's own count of what one key takes (every element counted, not sampled)."""
    return int(client.memory_usage(key, samples=0) or 0)


def measure(
    redis_url: str,
    days: int = 365,
    rate: int = 1000,
    resightings: int = 300,
    expire_days: int = 30,
    batch: int = 500,
) -> dict[str, Any]:
    instances = {
        "year": {
            "zia": "prod",
            "category": CATEGORY,
            "sources": ["malicious_urls"],
            "fetch_from": "1d",
            "batch_size": batch,
            "expire_after": f"{expire_days}d",
        }
    }
    rng = random.Random(11)
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    clock = Clock(start + timedelta(minutes=1))
    last_seen: dict[str, float] = {}
    mismatches: list[int] = []
    call_checks: list[bool] = []
    sizes: dict[int, int] = {}
    memory: dict[int, int] = {}
    provenance: dict[int, int] = {}
    audit: dict[int, int] = {}
    totals: Counter[str] = Counter()
    last_day_calls: dict[str, Any] = {}
    quota = rate * (expire_days + RESIGHT_SPAN + 10) * 2
    sandbox = Sandbox(enforce_limits=False, url_quota=quota).start()
    sandbox.mimecast.clock = clock  # Mimecast's time (its Date headers) is the simulated day's
    try:
        with tempfile.TemporaryDirectory() as tmp, Stopwatch() as watch:
            settings = {"settle": "0s", "overlap": "5m", "run_deadline": "10m"}
            path = write_config(sandbox, Path(tmp) / "y.toml", instances, redis_url, settings)
            rt = Runtime(
                load(path), client, policy=BENCH_POLICY, now=clock, zia_method_limits=LOOSE
            )
            zia = sandbox.tenants["prod"].emulator
            for day in range(days):
                records = _day_records(day, start, rate, resightings, rng)
                sandbox.mimecast.add_url_logs(url_log("https://" + n, at) for n, at in records)
                for name, at in records:
                    last_seen[name] = max(last_seen.get(name, 0.0), at.timestamp())
                clock.now = start + timedelta(days=day + 1)
                cutoff = (clock.now - timedelta(days=expire_days)).timestamp()
                due = [n for n, seen in last_seen.items() if seen < cutoff]
                for name in due:
                    del last_seen[name]
                before = len(zia.calls)
                result = sync_instance(rt, "year")
                activate_pending(rt)
                made = Counter(c.bucket for c in zia.calls[before:])
                counters = result.counters
                pushed, removed = counters.pushed, counters.removed
                totals.update(pushed=pushed, expired=removed, **{result.outcome: 1})
                # The first run creates the category with its first batch: a POST, not a PUT.
                adds = math.ceil(pushed / batch) - made["POST /urlCategories"]
                puts = adds + math.ceil(removed / batch)
                call_checks.append(removed == len(due) and made["PUT /urlCategories/{id}"] == puts)
                last_day_calls = {"expired": removed, "pushed": pushed, "calls": dict(made)}
                size = len(zia.active_urls(CATEGORY))
                if size != len(last_seen):
                    mismatches.append(day)
                if day % 30 == 29 or day == days - 1:
                    sizes[day + 1] = size
                    memory[day + 1] = int(client.info("memory")["used_memory"])
                    provenance[day + 1] = _bytes(client, keys.instance_provenance("year"))
                    audit[day + 1] = _bytes(client, keys.audit_trail())
            rt.close()
    finally:
        sandbox.stop()
    client.flushall()
    client.close()
    # Everything but the audit trail is flat once expire_after has passed; the trail, once
    # audit_retention has.
    steady = {d: m - audit.get(d, 0) for d, m in memory.items() if d > expire_days + RESIGHT_SPAN}
    flat = bool(steady) and max(steady.values()) <= 1.1 * min(steady.values())
    # The trail keeps audit_retention (90 days by default): flat once that much has passed.
    retention_days = AUDIT_RETENTION_DAYS + 1
    audit_steady = [b for d, b in audit.items() if d > retention_days + 30]
    audit_flat = not audit_steady or max(audit_steady) <= 1.1 * min(audit_steady)
    under = bool(memory) and max(memory.values()) < MEMORY_LIMIT
    steady_sizes = [s for d, s in sizes.items() if d > expire_days + RESIGHT_SPAN]
    return {
        "days": days,
        "new_per_day": rate,
        "resightings_per_day": resightings,
        "expire_after_days": expire_days,
        "batch_size": batch,
        "expire_after_x_rate": rate * expire_days,
        "category_size_by_day": sizes,
        "steady_size_min_max": [min(steady_sizes), max(steady_sizes)] if steady_sizes else None,
        "category_matches_model_every_day": not mismatches,
        "days_not_matching": mismatches[:10],
        "redis_used_memory_by_day": memory,
        "redis_memory_flat_but_audit_trail": flat,
        "provenance_bytes_by_day": provenance,
        "audit_trail_bytes_by_day": audit,
        "audit_trail_flat_after_retention": audit_flat,
        "redis_under_100_mb": under,
        "remove_puts_are_ceil_e_over_batch": all(call_checks),
        "calls_of_the_last_day": last_day_calls,
        "totals": dict(totals),
        "wall_s": round(watch.seconds, 1),
        "meets_target": not mismatches and flat and all(call_checks) and audit_flat and under,
    }
