"""A run killed with SIGKILL at any point loses nothing
(docs/design.md#the-bookmark-and-the-window)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from tests.e2e import World
from threatshare import keys
from threatshare.sandbox.mimecast_logs import url_log
from threatshare.sandbox.world import Sandbox
from threatshare.state.ledger import Ledger

ROOT = Path(__file__).resolve().parent.parent
RECORDS = 40
INSTANCE = {
    "zia": "prod",
    "category": "Crash Test",
    "sources": ["malicious_urls"],
    "batch_size": 20,
}
KILL_POINTS = [0.5 + 0.15 * i for i in range(20)]


def seed_many(sandbox: Sandbox) -> set[str]:
    start = datetime.now(UTC) - timedelta(hours=1)
    sandbox.mimecast.add_url_logs(
        url_log(f"https://host-{i}.crash.example/p{i}", start + timedelta(seconds=i))
        for i in range(RECORDS)
    )
    return {f"host-{i}.crash.example/p{i}" for i in range(RECORDS)}


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", KILL_POINTS, ids=[f"{t:.2f}s" for t in KILL_POINTS])
def test_sigkill_then_rerun_loses_nothing(
    tmp_path: Path, redis_url: str, kill_after: float
) -> None:
    """Killed at this point of `run --once` and run again, every expected entry is in the
    category, active, once, and the instance has exactly one category."""
    with Sandbox(tenant_names=("prod",)) as sandbox:
        sandbox.mimecast.latency = 0.03
        expected = seed_many(sandbox)
        world = World(sandbox, tmp_path, redis_url)
        path = world.write({"crash": INSTANCE}, settings={"log_format": "json"})
        # The Mimecast account pages 10 records at a time, so the run has several checkpoints.
        path.write_text(
            path.read_text().replace("[mimecast.main]", "[mimecast.main]\npage_size = 10")
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "threatshare.cli", "--config", str(path), "run", "--once"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

        from threatshare import config as config_module

        config = config_module.load(path)
        # The dead run's locks would expire after their TTL; expire them now.
        client = redis.Redis.from_url(redis_url)
        tenant = config.zia["prod"].tenant_id
        client.delete(keys.instance_lock("crash"), keys.tenant_activation_lock(tenant))
        results = world.run(config)
        assert results["crash"].state == "ok"
        zia = sandbox.tenants["prod"].emulator
        assert zia.active_urls("Crash Test") == expected
        named = [c for c in zia.categories() if c.get("configuredName") == "Crash Test"]
        assert len(named) == 1
        assert set(Ledger(redis.Redis.from_url(redis_url)).scan("crash")) == expected
