"""ZIA calls per run (docs/design.md#performance): a run that adds N entries makes at most 1 quota
read and ⌈N / batch_size⌉ PUTs (+ one activation, + the category look-up on the instance's first
run); a run with nothing new makes no ZIA call at all. Counted from the ZIA emulator's call log.

One instance, ``batch_size`` 10,000, runs in order: first run (N = 1, category created), then
N = 0 (the last records are re-read through the overlap and deduped), 1, 10,000, 100,000.
"""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from bench.common import BENCH_POLICY, load, write_config
from threatshare.runtime import Runtime
from threatshare.sandbox.mimecast_logs import url_log
from threatshare.sandbox.world import Sandbox
from threatshare.sync import sync_instance
from threatshare.sync.activation import activate_pending

BATCH = 10_000
CATEGORY = "Bench Calls"
_serial = 0


def _add_threats(sandbox: Sandbox, count: int) -> None:
    global _serial
    at = datetime.now(UTC) - timedelta(seconds=2)
    sandbox.mimecast.add_url_logs(
        url_log(f"https://n{_serial + i}.calls-bench.example/p", at) for i in range(count)
    )
    _serial += count


def _one_run(sandbox: Sandbox, rt: Runtime, new: int, first: bool) -> dict[str, Any]:
    zia = sandbox.tenants["prod"].emulator
    _add_threats(sandbox, new)
    before = len(zia.calls)
    result = sync_instance(rt, "calls")
    activate_pending(rt)
    made = zia.calls[before:]
    by_bucket = Counter(call.bucket for call in made)
    allowed = (1 + math.ceil(new / BATCH) + 1) if new else 0
    lookup = sum(
        n
        for b, n in by_bucket.items()
        if b.startswith(("GET /urlCategories", "POST /urlCategories")) and "urlQuota" not in b
    )
    if first:
        allowed += lookup
    return {
        "new_entries": new,
        "first_run": first,
        "outcome": result.outcome,
        "pushed": result.counters.pushed,
        "zia_calls": len(made),
        "by_endpoint": dict(by_bucket),
        "allowed": allowed,
        "within_bound": len(made) <= allowed,
    }


def measure(redis_url: str, sizes: tuple[int, ...] = (0, 1, 10_000, 100_000)) -> dict[str, Any]:
    instances = {
        "calls": {
            "zia": "prod",
            "category": CATEGORY,
            "sources": ["malicious_urls"],
            "fetch_from": "1h",
            "batch_size": BATCH,
        }
    }
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    # Room to spare beyond quota_reserve (5%), so no run has to make room by evicting.
    with Sandbox(url_quota=2 * sum(sizes) + 1000) as sandbox, tempfile.TemporaryDirectory() as tmp:
        settings = {"settle": "0s", "overlap": "10s", "run_deadline": "10m"}
        config = load(write_config(sandbox, Path(tmp) / "c.toml", instances, redis_url, settings))
        rt = Runtime(config, client, policy=BENCH_POLICY)
        runs = [_one_run(sandbox, rt, 1, first=True)]
        runs += [_one_run(sandbox, rt, size, first=False) for size in sizes]
        active = len(sandbox.tenants["prod"].emulator.active_urls(CATEGORY))
        rt.close()
    client.flushall()
    client.close()
    return {
        "batch_size": BATCH,
        "runs": runs,
        "all_active": active == 1 + sum(sizes),
        "meets_target": all(run["within_bound"] for run in runs),
    }
