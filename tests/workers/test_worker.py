"""``threatshare worker`` as a real process: burst mode, warm and cold shutdown on SIGTERM."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from rq.job import Callback, Job, JobStatus

from threatshare import keys
from threatshare.sandbox.mimecast_logs import url_log
from threatshare.sandbox.world import Sandbox
from threatshare.state.store import Store
from workers import jobs
from workers.scheduler import fleet_queue
from workers.worker import STOP_GRACE

from .processes import spawn, stop, tail, wait_for

INSTANCES = {
    "urls": {
        "zia": "prod",
        "category": "Worker URLs",
        "sources": ["malicious_urls"],
        "fetch_from": "2h",
    }
}
#: Seconds an emulated Mimecast call takes: a run of many calls is long; a hung call longer
#: than any bound of these tests.
LONG_CALL = 3.0
HUNG_CALL = 120.0
#: How long a worker may take to exit once asked to, on a loaded machine: the product's
#: few seconds plus a process's teardown, with room to spare.
STOP_BOUND = 20.0


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(tenant_names=("prod",)) as world:
        world.mimecast.add_url_logs(
            [url_log("https://slow.example/x", datetime.now(UTC) - timedelta(hours=1))]
        )
        yield world


@pytest.fixture
def config_path(sandbox: Sandbox, tmp_path: Path, redis_url: str) -> Path:
    settings = {"redis_url": redis_url, "settle": "0s", "interval": "10s", "log_format": "json"}
    return sandbox.write_config(tmp_path / "threatshare.toml", INSTANCES, settings=settings)


def started(client: redis.Redis, job: Job) -> bool:
    return job.get_status(refresh=True) == JobStatus.STARTED


class TestWorkerProcess:
    def test_burst_worker_runs_the_queue_and_exits(
        self, config_path: Path, tmp_path: Path, redis_client: redis.Redis, sandbox: Sandbox
    ) -> None:
        """`worker --burst` runs what is queued, then exits 0 by itself, without waiting out
        RQ's minute-long poll of its command channel."""
        job = fleet_queue(redis_client).enqueue(jobs.sync_job, "urls", result_ttl=600)
        log = tmp_path / "worker.log"
        process = spawn(config_path, "worker", "--burst", log=log)
        assert process.wait(timeout=50) == 0, tail(log)
        assert job.latest_result().return_value["outcome"] == "ok"
        assert sandbox.tenants["prod"].emulator.staged_urls("Worker URLs") == {"slow.example/x"}

    def test_sigterm_ends_the_run_at_its_next_check(
        self, config_path: Path, tmp_path: Path, redis_client: redis.Redis, sandbox: Sandbox
    ) -> None:
        """SIGTERM during a long run: the run ends at its next check instead of running on, the
        worker exits 0 long before the run would have ended, the bookmark is at most where a
        fully shared chunk put it, and the next run shares everything."""
        config_path.write_text(config_path.read_text().replace('"2h"', '"7d"'))
        sandbox.mimecast.latency = LONG_CALL
        log = tmp_path / "worker.log"
        process = spawn(config_path, "worker", log=log)
        try:
            job = fleet_queue(redis_client).enqueue(jobs.sync_job, "urls", result_ttl=600)
            wait_for("the run to start", lambda: started(redis_client, job), timeout=60)
            wait_for("the run's first chunk", lambda: "run.start" in log.read_text(), timeout=60)
            calls_at_signal = len(sandbox.mimecast.calls)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=STOP_BOUND) == 0, tail(log)
        finally:
            stop(process)
        # A 7-day window of 12-hour chunks needs over a dozen calls of LONG_CALL seconds each;
        # the run stopped after at most the one in flight and one more.
        assert len(sandbox.mimecast.calls) <= calls_at_signal + 2
        assert "worker.stopping" in log.read_text()
        state = Store(redis_client).load("urls")
        assert state.bookmark is None or state.bookmark < datetime.now(UTC) - timedelta(hours=1)
        sandbox.mimecast.latency = 0.0
        fleet_queue(redis_client).enqueue(jobs.sync_job, "urls", result_ttl=60)
        again = spawn(config_path, "worker", "--burst", log=log)
        assert again.wait(timeout=STOP_BOUND * 4) == 0, tail(log)
        assert Store(redis_client).load("urls").state == "ok"
        assert sandbox.tenants["prod"].emulator.staged_urls("Worker URLs") == {"slow.example/x"}

    def test_a_run_stuck_in_a_call_is_abandoned_after_the_grace(
        self, config_path: Path, tmp_path: Path, redis_client: redis.Redis, sandbox: Sandbox
    ) -> None:
        """One SIGTERM while the run waits on a hung upstream: STOP_GRACE later the run is
        abandoned where it stands, the worker exits, and the run's lock is free."""
        sandbox.mimecast.latency = HUNG_CALL
        log = tmp_path / "worker.log"
        process = spawn(config_path, "worker", log=log)
        try:
            job = fleet_queue(redis_client).enqueue(jobs.sync_job, "urls", result_ttl=600)
            wait_for("the run to start", lambda: started(redis_client, job), timeout=60)
            wait_for(
                "the run's lock",
                lambda: redis_client.exists(keys.instance_lock("urls")),
                timeout=60,
                every=0.05,
            )
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=STOP_GRACE + STOP_BOUND)
        finally:
            stop(process)
        assert process.returncode is not None
        state = Store(redis_client).load("urls")
        assert state.bookmark is None and state.state != "ok"
        wait_for(
            "the lock to be free",
            lambda: not redis_client.exists(keys.instance_lock("urls")),
            timeout=30,
        )

    def test_second_sigterm_abandons_the_run_cleanly(
        self, config_path: Path, tmp_path: Path, redis_client: redis.Redis, sandbox: Sandbox
    ) -> None:
        """Two SIGTERMs abandon the run at once: nothing half-written, the lock is free, and
        the next run shares everything."""
        sandbox.mimecast.latency = HUNG_CALL
        log = tmp_path / "worker.log"
        process = spawn(config_path, "worker", log=log)
        try:
            job = fleet_queue(redis_client).enqueue(jobs.sync_job, "urls", result_ttl=600)
            wait_for("the run to start", lambda: started(redis_client, job), timeout=60)
            wait_for(
                "the run's lock",
                lambda: redis_client.exists(keys.instance_lock("urls")),
                timeout=60,
                every=0.05,
            )
            process.send_signal(signal.SIGTERM)
            time.sleep(1.2)  # RQ ignores a second signal within one second of the first
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=STOP_BOUND)
        finally:
            stop(process)
        state = Store(redis_client).load("urls")
        assert state.bookmark is None and state.state != "ok"
        wait_for(
            "the lock to be free",
            lambda: not redis_client.exists(keys.instance_lock("urls")),
            timeout=30,
        )
        sandbox.mimecast.latency = 0.0
        fleet_queue(redis_client).enqueue(jobs.sync_job, "urls", result_ttl=60)
        again = spawn(config_path, "worker", "--burst", log=log)
        assert again.wait(timeout=STOP_BOUND * 4) == 0, tail(log)
        assert Store(redis_client).load("urls").bookmark is not None
        assert sandbox.tenants["prod"].emulator.staged_urls("Worker URLs") == {"slow.example/x"}


def leave_marker(*_args: object) -> None:
    """A function a forged job or callback could name: it writes the marker its test checks."""
    Path(os.environ["THREATSHARE_TEST_MARKER"]).write_text("ran")


class TestAllowList:
    def test_a_job_naming_another_function_is_refused_and_the_fleet_carries_on(
        self, config_path: Path, tmp_path: Path, redis_client: redis.Redis, sandbox: Sandbox
    ) -> None:
        """A job naming ``os.system`` or a test function never runs: it ends in the failed
        registry, and the worker goes on to the sync job behind it."""
        marker = tmp_path / "marker"
        queue = fleet_queue(redis_client)
        forged = queue.enqueue("os.system", f"touch {marker}", result_ttl=60)
        imported = queue.enqueue("tests.workers.test_worker.leave_marker", result_ttl=60)
        real = queue.enqueue(jobs.sync_job, "urls", result_ttl=60)
        log = tmp_path / "worker.log"
        process = spawn(config_path, "worker", "--burst", log=log, marker=marker)
        assert process.wait(timeout=30) == 0, tail(log)
        assert not marker.exists()
        failed = queue.failed_job_registry.get_job_ids()
        assert {forged.id, imported.id} <= set(failed)
        assert forged.get_status(refresh=True) == JobStatus.FAILED
        assert "job.refused" in log.read_text()
        assert real.latest_result().return_value["outcome"] == "ok"
        assert sandbox.tenants["prod"].emulator.staged_urls("Worker URLs") == {"slow.example/x"}

    def test_a_threatshare_job_carrying_a_callback_is_refused(
        self, config_path: Path, tmp_path: Path, redis_client: redis.Redis, sandbox: Sandbox
    ) -> None:
        """A sync job that names a success or failure callback is refused whole: neither the
        job nor its callbacks run."""
        marker = tmp_path / "marker"
        queue = fleet_queue(redis_client)
        callback = Callback("tests.workers.test_worker.leave_marker")
        job = queue.enqueue(
            jobs.sync_job, "urls", on_success=callback, on_failure=callback, result_ttl=60
        )
        log = tmp_path / "worker.log"
        process = spawn(config_path, "worker", "--burst", log=log, marker=marker)
        assert process.wait(timeout=30) == 0, tail(log)
        assert not marker.exists()
        assert job.id in queue.failed_job_registry.get_job_ids()
        assert sandbox.tenants["prod"].emulator.staged_urls("Worker URLs") == set()
