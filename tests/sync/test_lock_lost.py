"""Runs that lose their lock (docs/design.md#the-fleet): a run that can no longer renew stops at
once and writes nothing more, destructive writes are fenced by the lock's token, and two runs of one
instance stage apart, so interleaved runs lose nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from tests.e2e import FAST
from tests.workers.processes import wait_for
from threatshare import config as config_module
from threatshare import keys
from threatshare.config import Config
from threatshare.errors import LockLost
from threatshare.runtime import Runtime
from threatshare.sandbox.mimecast_logs import url_log
from threatshare.sandbox.world import Sandbox
from threatshare.state.ledger import Ledger
from threatshare.state.lock import try_lock
from threatshare.state.store import Store
from threatshare.sync import RunResult, sync_instance

INSTANCES = {"urls": {"zia": "prod", "category": "Lock URLs", "sources": ["malicious_urls"]}}
THREATS = [f"https://t{i}.lock.example/x" for i in range(6)]
#: A short lease, renewed every third of it: a run notices a lost lock within half a second.
LEASE = 1.5


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(tenant_names=("prod",)) as world:
        now = datetime.now(UTC)
        world.mimecast.add_url_logs(
            url_log(url, now - timedelta(hours=1, minutes=i)) for i, url in enumerate(THREATS)
        )
        yield world


@pytest.fixture
def config(sandbox: Sandbox, tmp_path: Path, redis_url: str) -> Config:
    settings = {"redis_url": redis_url, "settle": "0s"}
    path = sandbox.write_config(tmp_path / "t.toml", INSTANCES, settings=settings)
    return config_module.load(path)


def run_once(config: Config, redis_url: str) -> RunResult:
    """One run in a runtime (and Redis connection) of its own, as another worker would."""
    client = redis.Redis.from_url(redis_url)
    rt = Runtime(config, client, policy=FAST, lock_lease=LEASE)
    try:
        return sync_instance(rt, "urls")
    finally:
        rt.close()
        client.close()


def shared(sandbox: Sandbox) -> set[str]:
    return sandbox.tenants["prod"].emulator.staged_urls("Lock URLs")


class TestInterleavedRuns:
    def test_a_run_whose_lock_lapsed_stops_writes_nothing_and_loses_nothing(
        self, sandbox: Sandbox, config: Config, redis_url: str, redis_client: redis.Redis
    ) -> None:
        """Run A's lease lapses mid-pull and run B takes the instance and completes; A stops at
        its next step with a temporary lock_lost error and writes nothing (B's state stands),
        and every threat is in the category."""
        sandbox.mimecast.latency = 1.5  # A's one page outlives its lease
        results: list[RunResult] = []
        first = threading.Thread(target=lambda: results.append(run_once(config, redis_url)))
        first.start()
        try:
            wait_for("run A's lock", lambda: redis_client.exists(keys.instance_lock("urls")), 10)
            wait_for("run A's first page", lambda: sandbox.mimecast.calls, 10, every=0.02)
            # A's worker stalls: its lease is gone before it can renew.
            redis_client.delete(keys.instance_lock("urls"))
            sandbox.mimecast.latency = 0.0
            second = run_once(config, redis_url)
        finally:
            first.join(timeout=30)
        assert second.outcome == "ok", second.error
        after_b = Store(redis_client).load("urls")
        (lost,) = results
        assert lost.outcome == "retrying"
        assert lost.error is not None and lost.error["code"] == "lock_lost"
        assert lost.error["kind"] == "temporary"
        state = Store(redis_client).load("urls")
        assert state.state == "ok" and state.last_error is None
        assert state.bookmark == after_b.bookmark and state.run_id == second.run_id
        assert shared(sandbox) == {u.removeprefix("https://") for u in THREATS}

    def test_losing_the_lock_before_the_bookmark_is_a_clean_temporary_error(
        self, sandbox: Sandbox, config: Config, redis_url: str, redis_client: redis.Redis
    ) -> None:
        """A run whose lock is taken over just before it moves the bookmark ends `retrying`
        with lock_lost (no crash), leaves the bookmark alone, and the next run shares all."""
        real_finish = Store.finish_ok

        def taken_over(self: Store, name: str, lock: object, *args: object) -> bool:
            redis_client.set(keys.instance_lock(name), "another-run")
            return real_finish(self, name, lock, *args)  # type: ignore[arg-type]

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Store, "finish_ok", taken_over)
            result = run_once(config, redis_url)
        assert result.outcome == "retrying"
        assert result.error is not None and result.error["code"] == "lock_lost"
        assert Store(redis_client).load("urls").bookmark is None
        redis_client.delete(keys.instance_lock("urls"))
        assert run_once(config, redis_url).outcome == "ok"
        assert shared(sandbox) == {u.removeprefix("https://") for u in THREATS}


class TestFencedWrites:
    def test_a_destructive_write_without_the_lock_is_refused(
        self, redis_client: redis.Redis
    ) -> None:
        """Forgetting entries needs the lock: a run whose token is not the lock's gets
        LockLost and the ledger keeps its entries."""
        ledger = Ledger(redis_client)
        now = datetime.now(UTC)
        ledger.record_pushed("fenced", {"a.example": now.timestamp(), "b.example": now.timestamp()})
        lock = try_lock(redis_client, "fenced", 5.0)
        assert lock is not None
        redis_client.set(keys.instance_lock("fenced"), "someone-else")
        with pytest.raises(LockLost):
            ledger.record_removed("fenced", lock, ["a.example"])
        assert set(ledger.scan("fenced")) == {"a.example", "b.example"}

    def test_two_runs_stage_apart(self, redis_client: redis.Redis) -> None:
        """Each run stages in its own key: clearing one run's staging leaves the other's."""
        ledger = Ledger(redis_client)
        first, second = ledger.staging("apart", "run-1"), ledger.staging("apart", "run-2")
        assert first != second
        ledger.stage(first, {"a.example": 1.0})
        ledger.stage(second, {"b.example": 2.0})
        ledger.clear_staged(first)
        assert ledger.staged_count(first) == 0
        assert list(ledger.staged_newest_first(second)) == [{"b.example": 2.0}]
        assert redis_client.ttl(second) > 0  # a crashed run's staging does not stay forever
