"""The 30-day backlog (docs/design.md#performance): pulled, normalised and pushed with peak memory
under 200 MB, not growing with the number of records.

The emulators (Mimecast serving a generated backlog it never holds in memory, the IdP, ZIA)
run in this process and Redis in its own; the sync runs in a child process
(:mod:`bench.backlog_run`) that reports its own peak RSS, so neither the emulators'
memory nor Redis' counts. Each size starts from an empty Redis and a fresh sandbox.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from bench.common import write_config
from threatshare.sandbox.mimecast_logs import generated_url_log
from threatshare.sandbox.world import Sandbox

ROOT = Path(__file__).resolve().parents[1]
LIMIT_MB = 200
BATCH = 10_000
INSTANCE = "backlog"


def _child(config: Path, log: Path, timeout: float) -> tuple[dict[str, Any], float]:
    """Run the sync child; its JSON report and the peak resident memory it measured of itself
    (``VmHWM``: the kernel's high-water mark of the child's own address space)."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("THREATSHARE_")}
    with log.open("wb") as err:
        try:
            done = subprocess.run(
                [sys.executable, "-m", "bench.backlog_run", str(config), INSTANCE],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=err,
                timeout=timeout,
            )
            out = done.stdout.decode()
        except subprocess.TimeoutExpired:
            out = ""
    lines = [line for line in out.splitlines() if line.startswith("{")]
    report = json.loads(lines[-1]) if lines else {"outcome": "no report", "stderr_tail": _tail(log)}
    return report, float(report.get("peak_rss_mb_self", -1))


def _tail(path: Path, lines: int = 5) -> list[str]:
    return path.read_text(errors="replace").splitlines()[-lines:]


def _padded(url_bytes: int) -> Any:
    """Records whose URL is ``url_bytes`` long, padded in the query (a distinct URL each):
    the input that makes a decision cache bounded by count, not bytes, hold hundreds of MB."""

    def make(index: int, date: str) -> dict[str, Any]:
        record = generated_url_log(index, date)
        url = record["url"] + "&pad="
        record["url"] = url + "x" * max(0, url_bytes - len(url))
        return record

    return make


def measure_one(
    redis_url: str, count: int, timeout: float = 900, url_bytes: int | None = None
) -> dict[str, Any]:
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    now = datetime.now(UTC)
    instances = {
        INSTANCE: {
            "zia": "prod",
            "category": "Backlog URLs",
            "sources": ["malicious_urls"],
            "fetch_from": "30d",
            "batch_size": BATCH,
        }
    }
    # Room for every record beside the default quota_reserve (5 % of the quota is never taken).
    quota = int(count * 1.06) + 10_000
    with Sandbox(url_quota=quota) as sandbox, tempfile.TemporaryDirectory() as tmp:
        make = _padded(url_bytes) if url_bytes else generated_url_log
        sandbox.mimecast.set_url_log_generator(
            count, now - timedelta(days=30) + timedelta(minutes=5), now - timedelta(minutes=5), make
        )
        config = write_config(
            sandbox, Path(tmp) / "backlog.toml", instances, redis_url, {"run_deadline": "1h"}
        )
        report, peak = _child(config, Path(tmp) / "child.log", timeout)
        zia = sandbox.tenants["prod"].emulator
        active = len(zia.active_urls("Backlog URLs"))
        pages = len(sandbox.mimecast.calls_to("url"))
        puts = sum(1 for c in zia.calls if c.method == "PUT")
        violations = zia.limit_violations()
        count_429 = zia.count_429
    client.flushall()
    client.close()
    wall = report.get("wall_s") or 0
    return {
        "records": count,
        "url_bytes": url_bytes,
        "outcome": report.get("outcome"),
        "error": report.get("error"),
        "wall_s": wall,
        "records_per_s": round(count / wall) if wall else None,
        "peak_rss_mb": peak,
        "active_in_zia": active,
        "mimecast_pages": pages,
        "zia_puts": puts,
        "zia_429": count_429,
        "zia_limit_violations": len(violations),
        "counters": report.get("counters"),
    }


def measure(
    redis_url: str, sizes: tuple[int, ...] = (100_000, 1_000_000), url_bytes: int | None = None
) -> dict[str, Any]:
    runs = [measure_one(redis_url, size, url_bytes=url_bytes) for size in sizes]
    peaks = [run["peak_rss_mb"] for run in runs]
    return {
        "runs": runs,
        "limit_mb": LIMIT_MB,
        "under_limit": all(0 < peak < LIMIT_MB for peak in peaks),
        # Flat: the largest run peaks at most 20% (and 20 MB) above the smallest.
        "flat": max(peaks) <= max(min(peaks) * 1.2, min(peaks) + 20),
        "all_shared": all(run["active_in_zia"] == run["records"] for run in runs),
    }
