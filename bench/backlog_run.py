"""The threatshare side of the backlog benchmark, run as its own process so that its peak
memory is measured alone: ``python -m bench.backlog_run CONFIG INSTANCE``.

One run of the instance, then the tenant's activation, as ``run --once`` does; prints one JSON
line with the outcome, the counters, the wall time and this process's peak RSS.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import time
from pathlib import Path

import redis

from bench.common import BENCH_POLICY, load
from threatshare import logs
from threatshare.runtime import Runtime
from threatshare.sync import sync_instance
from threatshare.sync.activation import activate_pending


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started. ``VmHWM`` belongs to the address
    space exec created, whereas ``ru_maxrss`` keeps the forking parent's peak across exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)  # kB
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main(config_path: str, instance: str) -> int:
    # stdout carries the report alone; logs (warnings up) go to stderr, as the product's do.
    logs.configure("json", level=logging.WARNING)
    config = load(Path(config_path))
    url = config.settings.redis_url
    if url is None:
        raise SystemExit("the benchmark configuration names its Redis")
    client = redis.Redis.from_url(url.get_secret_value())
    rt = Runtime(config, client, policy=BENCH_POLICY)
    started = time.perf_counter()
    result = sync_instance(rt, instance)
    synced = time.perf_counter() - started
    activations = activate_pending(rt)
    rt.close()
    client.close()
    report = {
        "outcome": result.outcome,
        "error": result.error,
        "counters": result.counters.totals(),
        "sync_s": round(synced, 2),
        "wall_s": round(time.perf_counter() - started, 2),
        "activated": [a.zia for a in activations if a.activated],
        "peak_rss_mb_self": peak_rss_mb(),
    }
    print(json.dumps(report))
    return 0 if result.outcome == "ok" else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
