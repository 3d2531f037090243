"""The fleet's jobs on a real Redis and the emulators: leases, token reuse, activation, alerts."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.serializers import JSONSerializer

from threatshare import config as config_module
from threatshare import keys
from threatshare.alerts.message import Alert
from threatshare.alerts.outbox import Outbox
from threatshare.config import Config
from threatshare.runtime import Runtime
from threatshare.sandbox.mimecast_logs import url_log
from threatshare.sandbox.world import Sandbox
from threatshare.state.activation_marks import ActivationMarks
from threatshare.state.store import Store
from workers import jobs
from workers.jobs import fleet_runtime, lease_for
from workers.scheduler import fleet_queue
from workers.worker import FleetWorker

INSTANCES = {
    "urls": {"zia": "prod", "category": "Fleet URLs", "sources": ["malicious_urls"]},
}


@pytest.fixture
def keep_signal_handlers() -> Iterator[None]:
    """An RQ worker installs SIGINT/SIGTERM handlers; give pytest its own back afterwards."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture
def runtime(redis_client: redis.Redis) -> Iterator[Callable[[Config], Runtime]]:
    """Makes fleet runtimes on the test's Redis and closes their connections afterwards."""
    made: list[Runtime] = []

    def make(config: Config) -> Runtime:
        made.append(fleet_runtime(config, redis_client))
        return made[-1]

    yield make
    for rt in made:
        rt.close()


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(tenant_names=("prod",)) as world:
        yield world


def load(sandbox: Sandbox, tmp_path: Path, redis_url: str, **settings: str) -> Config:
    path = sandbox.write_config(
        tmp_path / "threatshare.toml",
        INSTANCES,
        settings={"redis_url": redis_url, "settle": "0s", **settings},
    )
    return config_module.load(path, environ_overrides=False)


def work_burst(rt: Runtime) -> None:
    worker = FleetWorker(rt)
    try:
        worker.work(burst=True, logging_level="WARNING")
    finally:
        worker.connection.close()


def enqueue(client: redis.Redis, func: object, *args: object) -> Job:
    queue: Queue = fleet_queue(client)
    return queue.enqueue(func, *args, result_ttl=60)


class TestLease:
    def test_lease_is_half_an_interval_within_bounds(
        self, sandbox: Sandbox, tmp_path: Path, redis_url: str
    ) -> None:
        """The run lease is half the interval, never under 5 s nor over 30 s."""
        assert lease_for(load(sandbox, tmp_path, redis_url, interval="10s")) == 5.0
        assert lease_for(load(sandbox, tmp_path, redis_url, interval="40s")) == 20.0
        assert lease_for(load(sandbox, tmp_path, redis_url, interval="1h")) == 30.0

    def test_fleet_runtime_locks_for_one_lease(
        self,
        runtime: Callable[[Config], Runtime],
        sandbox: Sandbox,
        tmp_path: Path,
    ) -> None:
        """A fleet runtime's run lock lives one lease, not the whole run deadline."""
        config = load(sandbox, tmp_path, "redis://127.0.0.1:1/0", interval="20s")
        rt = runtime(config)
        assert rt.lock_lease == 10.0
        assert rt.lock_lease < config.settings.run_deadline.total_seconds()


@pytest.mark.usefixtures("keep_signal_handlers")
class TestJobs:
    def test_sync_jobs_share_one_token_per_upstream(
        self,
        runtime: Callable[[Config], Runtime],
        sandbox: Sandbox,
        tmp_path: Path,
        redis_url: str,
        redis_client: redis.Redis,
    ) -> None:
        """Two runs in one worker fetch one Mimecast token, not one each: the worker's runtime
        outlives its jobs."""
        now = datetime.now(UTC)
        sandbox.mimecast.add_url_logs([url_log("https://one.example/a", now - timedelta(hours=1))])
        rt = runtime(load(sandbox, tmp_path, redis_url))
        first = enqueue(redis_client, jobs.sync_job, "urls")
        work_burst(rt)
        a_minute_ago = datetime.now(UTC) - timedelta(minutes=1)
        sandbox.mimecast.add_url_logs([url_log("https://two.example/b", a_minute_ago)])
        second = enqueue(redis_client, jobs.sync_job, "urls")
        work_burst(rt)
        assert first.latest_result().return_value["outcome"] == "ok"
        assert second.latest_result().return_value["outcome"] == "ok"
        assert second.latest_result().return_value["pushed"] == 1
        assert sandbox.mimecast.tokens_issued == 1
        assert redis_client.exists(keys.instance_lock("urls")) == 0

    def test_sync_job_of_an_unknown_instance_does_nothing(
        self,
        runtime: Callable[[Config], Runtime],
        sandbox: Sandbox,
        tmp_path: Path,
        redis_url: str,
        redis_client: redis.Redis,
    ) -> None:
        """A job naming an instance this worker's configuration lacks ends without a run."""
        rt = runtime(load(sandbox, tmp_path, redis_url))
        job = enqueue(redis_client, jobs.sync_job, "gone")
        work_burst(rt)
        assert job.latest_result().return_value == {
            "instance": "gone",
            "outcome": "unknown_instance",
        }
        assert sandbox.mimecast.calls == []

    def test_activate_job_activates_a_marked_tenant_once(
        self,
        runtime: Callable[[Config], Runtime],
        sandbox: Sandbox,
        tmp_path: Path,
        redis_url: str,
        redis_client: redis.Redis,
    ) -> None:
        """An activation job activates a marked tenant and clears the mark; a second is a no-op."""
        config = load(sandbox, tmp_path, redis_url)
        tenant_id = config.zia["prod"].tenant_id
        ActivationMarks(redis_client).mark_unactivated(tenant_id)
        rt = runtime(config)
        first = enqueue(redis_client, jobs.activate_job, tenant_id)
        second = enqueue(redis_client, jobs.activate_job, tenant_id)
        work_burst(rt)
        assert first.latest_result().return_value["activated"] is True
        assert second.latest_result().return_value["activated"] is False
        assert sandbox.tenants["prod"].emulator.activations == 1
        assert ActivationMarks(redis_client).unactivated_tenants() == []

    def test_a_refused_activation_halts_the_tenant_in_the_fleet(
        self,
        runtime: Callable[[Config], Runtime],
        sandbox: Sandbox,
        tmp_path: Path,
        redis_url: str,
        redis_client: redis.Redis,
    ) -> None:
        """An activation job that ZIA refuses (403) halts the tenant's instances with
        activation_refused and queues one halt e-mail; a second refused job queues none."""
        config = load(sandbox, tmp_path, redis_url)
        tenant_id = config.zia["prod"].tenant_id
        marks = ActivationMarks(redis_client)
        marks.mark_unactivated(tenant_id)
        sandbox.tenants["prod"].emulator.fail_next("403", 10, path="/status/activate")
        with jobs.using_runtime(runtime(config)):
            first = jobs.activate_job(tenant_id)
            second = jobs.activate_job(tenant_id)
        assert first["halted"] == ["urls"] and second["halted"] == []
        assert (first["error"] or {}).get("code") == "activation_refused"
        state = Store(redis_client).load("urls")
        assert state.state == "halted"
        assert (state.last_error or {}).get("code") == "activation_refused"
        assert Outbox(redis_client).pending() == 1
        assert marks.unactivated_tenants() == [tenant_id]
        assert (marks.refusal(tenant_id) or {}).get("code") == "activation_refused"

    def test_activate_job_of_an_unknown_tenant_does_nothing(
        self,
        runtime: Callable[[Config], Runtime],
        sandbox: Sandbox,
        tmp_path: Path,
        redis_url: str,
        redis_client: redis.Redis,
    ) -> None:
        """An activation job for a tenant id not in the configuration calls no ZIA."""
        rt = runtime(load(sandbox, tmp_path, redis_url))
        job = enqueue(redis_client, jobs.activate_job, "0123456789abcdef")
        work_burst(rt)
        assert job.latest_result().return_value == {"zia": None, "activated": False}
        assert sandbox.tenants["prod"].emulator.calls == []

    def test_deliver_job_sends_the_outbox(
        self,
        runtime: Callable[[Config], Runtime],
        sandbox: Sandbox,
        tmp_path: Path,
        redis_url: str,
        redis_client: redis.Redis,
    ) -> None:
        """A delivery job e-mails the queued alert through SMTP and empties the outbox."""
        config = load(sandbox, tmp_path, redis_url)
        alert = Alert(
            kind="halted",
            instance="urls",
            category="Fleet URLs",
            zia_tenant="prod",
            mimecast_account="main",
            code="zia_auth",
            message="bad secret",
            since=datetime.now(UTC),
            bookmark=None,
            recipients=("soc@example.com",),
        )
        assert Outbox(redis_client).put(alert, "halted:test")
        job = enqueue(redis_client, jobs.deliver_alerts_job)
        work_burst(runtime(config))
        assert job.latest_result().return_value["sent"] == 1
        assert Outbox(redis_client).pending() == 0
        assert len(sandbox.smtp.messages) == 1

    def test_a_plain_rq_worker_runs_jobs_from_the_config_file(
        self,
        sandbox: Sandbox,
        tmp_path: Path,
        redis_url: str,
        redis_client: redis.Redis,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Under RQ's own worker a job builds its runtime from $THREATSHARE_CONFIG and runs."""
        sandbox.mimecast.add_url_logs(
            [url_log("https://plain.example/p", datetime.now(UTC) - timedelta(hours=1))]
        )
        load(sandbox, tmp_path, redis_url)
        monkeypatch.setenv("THREATSHARE_CONFIG", str(tmp_path / "threatshare.toml"))
        job = enqueue(redis_client, jobs.sync_job, "urls")
        worker = SimpleWorker(
            [fleet_queue(redis_client)], connection=redis_client, serializer=JSONSerializer
        )
        worker.work(burst=True, logging_level="WARNING")
        assert job.latest_result().return_value["outcome"] == "ok"
        assert sandbox.tenants["prod"].emulator.staged_urls("Fleet URLs") == {"plain.example/p"}
