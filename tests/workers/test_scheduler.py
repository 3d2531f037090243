"""The fleet's scheduler on a real Redis: unique slot jobs, coalesced activations, alerts."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from rq.job import Job

from threatshare import config as config_module
from threatshare import keys
from threatshare.alerts.message import Alert
from threatshare.alerts.outbox import Outbox
from threatshare.config import Config
from threatshare.sandbox.world import to_toml
from threatshare.state.activation_marks import ActivationMarks
from threatshare.state.store import Store
from threatshare.zia.ratelimit import RateLimiter
from workers.scheduler import (
    ACTIVATE_BUCKET,
    PACED_GAP,
    Scheduler,
    TenantActivations,
    activation_due,
    first_run_queue,
    fleet_queue,
    recent_activations,
)

ZIA = {
    "api_base": "http://127.0.0.1:9/api/v1",
    "auth": "oauth",
    "token_url": "http://127.0.0.1:9/token",
    "client_id": "c",
    "client_secret": "s",
    "scope": "zscloud.net::1::r",
}


def write_config(tmp_path: Path, redis_url: str, *, interval: str = "10s") -> Config:
    tables = {
        "settings": {"redis_url": redis_url, "interval": interval, "run_deadline": "20s"},
        "mimecast.main": {"base_url": "http://127.0.0.1:9", "client_id": "m", "client_secret": "s"},
        "zia.prod": ZIA,
        "zia.lab": {**ZIA, "api_base": "http://127.0.0.1:10/api/v1"},
        "instances.a": {
            "mimecast": "main",
            "zia": "prod",
            "category": "A",
            "sources": ["malicious_urls"],
        },
        "instances.b": {
            "mimecast": "main",
            "zia": "lab",
            "category": "B",
            "sources": ["malicious_urls"],
        },
        "instances.off": {
            "mimecast": "main",
            "zia": "prod",
            "category": "Off",
            "sources": ["malicious_urls"],
            "enabled": False,
        },
    }
    path = tmp_path / "threatshare.toml"
    path.write_text(to_toml(tables))
    return config_module.load(path, environ_overrides=False)


@pytest.fixture
def config(tmp_path: Path, redis_url: str) -> Config:
    return write_config(tmp_path, redis_url)


def queued(client: redis.Redis) -> list[str]:
    """Every queued job id, in the order a fleet worker takes them (first runs first)."""
    return first_run_queue(client).get_job_ids() + fleet_queue(client).get_job_ids()


def slot_now(client: redis.Redis, length: int) -> int:
    return int(client.time()[0]) // length


class TestSyncJobs:
    def test_one_job_per_enabled_instance_per_slot(
        self, config: Config, redis_client: redis.Redis
    ) -> None:
        """A tick enqueues one sync job per enabled instance, named after instance and slot."""
        enqueued = Scheduler(config, redis_client).tick()
        slot = slot_now(redis_client, 10)
        assert {keys.scheduler_slot("a", slot), keys.scheduler_slot("b", slot)} <= set(enqueued)
        assert not any(job_id.startswith("sync-off-") for job_id in queued(redis_client))
        assert len([j for j in queued(redis_client) if j.startswith("sync-")]) == 2

    def test_schedulers_never_double_enqueue_a_slot(
        self, config: Config, redis_client: redis.Redis
    ) -> None:
        """Two schedulers ticking in the same slot, many times, queue each instance once."""
        first, second = Scheduler(config, redis_client), Scheduler(config, redis_client)
        for _ in range(3):
            first.tick()
            second.tick()
        sync_ids = [j for j in queued(redis_client) if j.startswith("sync-")]
        assert len(sync_ids) == len(set(sync_ids)) == 2

    def test_concurrent_schedulers_race_for_one_id(self, config: Config, redis_url: str) -> None:
        """Eight schedulers ticking at once in threads still enqueue each slot's job once."""
        results: list[list[str]] = []
        barrier = threading.Barrier(8)

        def tick() -> None:
            client = redis.Redis.from_url(redis_url)
            scheduler = Scheduler(config, client)
            barrier.wait(timeout=5)
            results.append(scheduler.tick())
            client.close()

        threads = [threading.Thread(target=tick) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        won = [job_id for ids in results for job_id in ids if job_id.startswith("sync-")]
        assert len(results) == 8
        assert len(won) == len(set(won)) == 2

    def test_job_options_fit_the_run_deadline_and_the_slot(
        self, config: Config, redis_client: redis.Redis
    ) -> None:
        """A sync job outlives the run deadline, is dropped after its slot, keeps its id for
        the slot, and carries only the instance name."""
        Scheduler(config, redis_client).tick()
        job_id = keys.scheduler_slot("a", slot_now(redis_client, 10))
        serializer = fleet_queue(redis_client).serializer
        job = Job.fetch(job_id, connection=redis_client, serializer=serializer)
        assert job.timeout is not None and job.timeout > 20
        assert job.ttl == 10
        assert job.result_ttl is not None and job.result_ttl >= 10
        assert job.args == ["a"] or job.args == ("a",)
        assert job.func_name == "workers.jobs.sync_job"
        assert 0 < redis_client.ttl(job.key) <= 10


class TestActivationJobs:
    def test_marked_tenant_gets_one_activation_at_the_front(
        self, config: Config, redis_client: redis.Redis
    ) -> None:
        """A tenant with unactivated changes gets one activation job, ahead of the sync jobs
        of instances that have run."""
        tenant_id = config.zia["prod"].tenant_id
        for name in ("a", "b"):
            redis_client.hset(keys.instance_state(name), "state", "ok")
        ActivationMarks(redis_client).mark_unactivated(tenant_id)
        scheduler = Scheduler(config, redis_client)
        scheduler.tick()
        scheduler.tick()
        ids = queued(redis_client)
        activations = [j for j in ids if j.startswith("activate-")]
        assert activations == [keys.activation_slot(tenant_id, slot_now(redis_client, 10))]
        assert ids[0] == activations[0]

    def test_a_refused_tenant_waits_for_resume(
        self, config: Config, redis_client: redis.Redis
    ) -> None:
        """While ZIA's refusal to activate stands and every instance of the tenant is halted,
        no activation is enqueued; once one is resumed, one is."""
        tenant_id = config.zia["prod"].tenant_id
        marks = ActivationMarks(redis_client)
        marks.mark_unactivated(tenant_id)
        marks.record_refusal(tenant_id, "activation_refused", "HTTP 403")
        store = Store(redis_client)
        error = {"kind": "permanent", "code": "activation_refused", "message": "HTTP 403"}
        store.finish_error("a", error, datetime.now(UTC), halt=True, fingerprint="f")
        Scheduler(config, redis_client).tick()
        assert not [j for j in queued(redis_client) if j.startswith("activate-")]
        store.resume("a")
        Scheduler(config, redis_client).tick()
        assert [j for j in queued(redis_client) if j.startswith("activate-")] == [
            keys.activation_slot(tenant_id, slot_now(redis_client, 10))
        ]

    def test_no_activation_without_a_mark(self, config: Config, redis_client: redis.Redis) -> None:
        """Without unactivated changes no activation job is enqueued."""
        Scheduler(config, redis_client).tick()
        assert not [j for j in queued(redis_client) if j.startswith("activate-")]

    def test_tenant_of_another_configuration_is_left_alone(
        self, config: Config, redis_client: redis.Redis
    ) -> None:
        """A marked tenant id this configuration does not know gets no job."""
        ActivationMarks(redis_client).mark_unactivated("ffffffffffffffff")
        Scheduler(config, redis_client).tick()
        assert not [j for j in queued(redis_client) if j.startswith("activate-")]

    def test_pacing_follows_the_hourly_budget(self) -> None:
        """Activations are free below half the budget, spaced above it, stopped at the limit."""
        assert activation_due(TenantActivations(0, None))
        assert activation_due(TenantActivations(19, 1.0))
        assert not activation_due(TenantActivations(20, 30.0))
        assert activation_due(TenantActivations(30, PACED_GAP))
        assert not activation_due(TenantActivations(40, 3000.0))
        assert PACED_GAP * 40 >= 3600, "the paced rate must stay under 40 an hour"

    def test_recent_activations_read_the_limiters_log(
        self, config: Config, redis_client: redis.Redis
    ) -> None:
        """Activations the fleet's limiter recorded are counted, with the time since the last."""
        tenant_id = config.zia["prod"].tenant_id
        limiter = RateLimiter(redis_client, tenant_id)
        assert limiter.try_acquire("POST", "/api/v1/status/activate") == 0.0
        assert limiter.try_acquire("POST", "/api/v1/status/activate") == 0.0
        seconds, micros = redis_client.time()
        recent = recent_activations(redis_client, tenant_id, seconds * 1_000_000 + micros)
        assert recent.last_hour == 2
        assert recent.seconds_since_last is not None and 0 <= recent.seconds_since_last < 5
        assert redis_client.exists(keys.tenant_limit(tenant_id, ACTIVATE_BUCKET)) == 1

    def test_paced_tenant_waits_for_its_gap(
        self, config: Config, redis_client: redis.Redis
    ) -> None:
        """A marked tenant that used half its hourly budget a moment ago gets no job yet."""
        tenant_id = config.zia["prod"].tenant_id
        key = keys.tenant_limit(tenant_id, ACTIVATE_BUCKET)
        seconds, micros = redis_client.time()
        now_us = seconds * 1_000_000 + micros
        redis_client.zadd(key, {f"call-{i}": now_us - i * 60_000_000 for i in range(25)})
        ActivationMarks(redis_client).mark_unactivated(tenant_id)
        Scheduler(config, redis_client).tick()
        assert not [j for j in queued(redis_client) if j.startswith("activate-")]


class TestAlertJobs:
    def test_delivery_only_while_alerts_wait(
        self, config: Config, redis_client: redis.Redis
    ) -> None:
        """An alert delivery job is enqueued when the outbox holds alerts, and not before."""
        scheduler = Scheduler(config, redis_client)
        scheduler.tick()
        assert not [j for j in queued(redis_client) if j.startswith("alerts-")]
        alert = Alert(
            kind="halted",
            instance="a",
            category="A",
            zia_tenant="prod",
            mimecast_account="main",
            code="zia_auth",
            message="m",
            since=datetime.now(UTC),
            bookmark=None,
            recipients=("s@example.com",),
        )
        Outbox(redis_client).put(alert, "halted:x")
        scheduler.tick()
        assert [j for j in queued(redis_client) if j.startswith("alerts-")] == [
            keys.delivery_slot(slot_now(redis_client, 10))
        ]


class TestLoop:
    def test_run_stops_when_asked(self, config: Config, redis_client: redis.Redis) -> None:
        """The loop ticks, then returns promptly once its stop event is set."""
        stop = threading.Event()
        scheduler = Scheduler(config, redis_client)
        thread = threading.Thread(target=scheduler.run, args=(stop,))
        thread.start()
        deadline = time.monotonic() + 5
        while not queued(redis_client) and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        thread.join(timeout=5)
        assert not thread.is_alive()
        assert queued(redis_client)

    def test_redis_outage_does_not_end_the_loop(self, tmp_path: Path) -> None:
        """With Redis unreachable, ticks fail quietly and the loop keeps going until stopped."""
        config = write_config(tmp_path, "redis://127.0.0.1:9/0")
        client = redis.Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.2)
        scheduler = Scheduler(config, client)
        stop = threading.Event()
        thread = threading.Thread(target=scheduler.run, args=(stop,))
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive()
        stop.set()
        thread.join(timeout=5)
        assert not thread.is_alive()
