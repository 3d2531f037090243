"""``explain`` against a large category: how long "why is this blocked?" takes with 100,000
entries (target: under 100 ms), and what the entries' provenance costs in Redis.

The ledger and the provenance are filled directly (as a year of runs would leave them), then
explain is asked about URLs under pushed paths, subdomains of pushed hosts, and URLs nothing
blocks. Explain looks entries up by name (a few dozen candidates per URL), so its time does not
grow with the category.
"""

from __future__ import annotations

import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from bench.common import load, percentile, write_config
from threatshare import keys
from threatshare.ops.explain import explain
from threatshare.sandbox.world import Sandbox
from threatshare.state.ledger import Ledger
from threatshare.state.provenance import ProvenanceBook, Sighting

TARGET_MS = 100.0
_CHUNK = 5000


def _fill(client: redis.Redis, name: str, entries: list[str], now: float) -> None:
    ledger, book = Ledger(client), ProvenanceBook(client, name)
    for start in range(0, len(entries), _CHUNK):
        chunk = entries[start : start + _CHUNK]
        ledger.record_pushed(name, dict.fromkeys(chunk, now - 3600))
        book.record(
            {e: [Sighting(int(now) - 3600, "Compromised", "0123456789abcdef")] for e in chunk},
            dict.fromkeys(chunk, "malicious_urls"),
        )
        book.pushed(chunk, int(now) - 3000)


def measure(redis_url: str, entries: int = 100_000, questions: int = 300) -> dict[str, Any]:
    rng = random.Random(7)
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    names = [f"host{i}.bench-{i % 97}.example/p/{i}" for i in range(entries)]
    now = datetime.now(UTC)
    sandbox = Sandbox(enforce_limits=False).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            instances = {
                "big": {"zia": "prod", "category": "Bench Big", "sources": ["malicious_urls"]}
            }
            config = load(write_config(sandbox, Path(tmp) / "e.toml", instances, redis_url))
            started = time.perf_counter()
            _fill(client, "big", names, now.timestamp())
            fill_s = time.perf_counter() - started
            asks = [f"https://{rng.choice(names)}/deeper?q=1" for _ in range(questions // 2)]
            asks += [f"https://nothing{i}.elsewhere.example/x/y/z" for i in range(questions // 2)]
            times: list[float] = []
            blocked = 0
            for ask in asks:
                t0 = time.perf_counter()
                found = explain(config, client, ask, pending=lambda zia: False)
                times.append((time.perf_counter() - t0) * 1000)
                blocked += found.blocked
            provenance = int(client.memory_usage(keys.instance_provenance("big"), samples=0) or 0)
    finally:
        sandbox.stop()
        client.flushall()
        client.close()
    worst = max(times)
    return {
        "entries": entries,
        "questions": len(asks),
        "blocked_answers": blocked,
        "fill_s": round(fill_s, 1),
        "explain_ms_p50": round(percentile(times, 0.5) or 0, 2),
        "explain_ms_p95": round(percentile(times, 0.95) or 0, 2),
        "explain_ms_max": round(worst, 2),
        "provenance_bytes": provenance,
        "provenance_bytes_per_entry": round(provenance / entries, 1),
        "target_ms": TARGET_MS,
        "meets_target": blocked == questions // 2 and worst < TARGET_MS,
    }
