"""A new instance's first run in a large paced fleet, on a real Redis with the clock driven: the
scheduler ticks at simulated instants and simulated workers take its jobs off the real queue."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from rq.job import Job, JobStatus

from threatshare import config as config_module
from threatshare import keys
from threatshare.config import Config
from threatshare.sandbox.world import to_toml
from threatshare.state.activation_marks import ActivationMarks
from workers.pacing import ACTIVATIONS_PER_HOUR, HOUR, PACED_GAP, ROUND_LEAD
from workers.scheduler import ACTIVATE_BUCKET, Scheduler, first_run_queue, fleet_queue

SECOND = 1_000_000
TENANTS = 100
INSTANCES = 1_000
INTERVAL = 60
WORKERS = 6
#: What a job keeps a worker busy for, in simulated seconds: a first run finds or creates its
#: category and pulls a backlog; a later run mostly finds nothing new.
FIRST_RUN_S = 3.0
LATER_RUN_S = 0.35
ACTIVATION_S = 0.3
#: The bound to prove: one interval plus one activation slot.
FIRST_RUN_BOUND_S = INTERVAL + PACED_GAP
STEP_S = 0.25


def write_config(tmp_path: Path, redis_url: str) -> Config:
    """1,000 instances on 100 ZIA tenants; instance ``n`` pushes to tenant ``n % 100``."""
    tables: dict[str, dict[str, object]] = {
        "settings": {"redis_url": redis_url, "interval": f"{INTERVAL}s"},
        "mimecast.main": {"base_url": "http://127.0.0.1:9", "client_id": "m", "client_secret": "s"},
    }
    for k in range(TENANTS):
        tables[f"zia.t{k}"] = {
            "api_base": f"http://127.0.1.{k + 1}:9/api/v1",
            "auth": "oauth",
            "token_url": f"http://127.0.1.{k + 1}:9/token",
            "client_id": f"client-{k}",
            "client_secret": "s",
            "scope": "zscloud.net::1::r",
        }
    for n in range(INSTANCES):
        tables[f"instances.i{n:04d}"] = {
            "mimecast": "main",
            "zia": f"t{n % TENANTS}",
            "category": f"C{n}",
            "sources": ["malicious_urls"],
        }
    path = tmp_path / "threatshare.toml"
    path.write_text(to_toml(tables))
    return config_module.load(path, environ_overrides=False)


@dataclass
class Fleet:
    """Simulated workers on the real queue; the clock is ``now`` (simulated seconds)."""

    client: redis.Redis
    config: Config
    start_us: int
    now: float = 0.0
    busy_until: list[float] = field(default_factory=lambda: [0.0] * WORKERS)
    running: dict[int, Job] = field(default_factory=dict)
    queued_at: dict[str, float] = field(default_factory=dict)
    first_run_at: dict[str, float] = field(default_factory=dict)
    dropped: int = 0

    @property
    def now_us(self) -> int:
        return self.start_us + round(self.now * SECOND)

    def tenant_of(self, instance: str) -> str:
        return self.config.zia[self.config.instances[instance].zia].tenant_id

    def finish(self, job: Job) -> None:
        """What the job's run leaves in Redis: an ok state and a mark (a run pushed something
        new, as in a busy fleet), or a logged activation."""
        name = job.args[0]
        if job.id.startswith("activate-"):
            marks = ActivationMarks(self.client)
            generation = marks.unactivated_generation(name)
            key = keys.tenant_limit(name, ACTIVATE_BUCKET)
            self.client.zadd(key, {f"sim-{self.now_us}": self.now_us})
            if generation is not None:
                marks.clear_unactivated(name, generation)
        else:
            self.client.hset(keys.instance_state(name), "state", "ok")
            self.first_run_at.setdefault(name, self.now)
            ActivationMarks(self.client).mark_unactivated(self.tenant_of(name))
        job.set_status(JobStatus.FINISHED)

    def take(self, worker: int) -> None:
        """The worker takes the first live job off the queues (in a fleet worker's order)."""
        first, queue = first_run_queue(self.client), fleet_queue(self.client)
        for _ in range(10_000):
            raw = self.client.lpop(first.key) or self.client.lpop(queue.key)
            if raw is None:
                return
            job_id = raw.decode()
            job = Job.fetch_many([job_id], connection=self.client, serializer=queue.serializer)[0]
            if job is None:
                continue
            if self.now - self.queued_at.get(job_id, self.now) > (job.ttl or HOUR):
                self.dropped += 1  # RQ drops a job queued past its ttl
                continue
            if job_id.startswith("activate-"):
                cost = ACTIVATION_S
            elif job.args[0] in self.first_run_at:
                cost = LATER_RUN_S
            else:
                cost = FIRST_RUN_S
            job.set_status(JobStatus.STARTED)
            self.running[worker] = job
            self.busy_until[worker] = self.now + cost
            return

    def step(self) -> None:
        for worker in range(WORKERS):
            if self.busy_until[worker] > self.now:
                continue
            job = self.running.pop(worker, None)
            if job is not None:
                self.finish(job)
            self.take(worker)


def paced_history(client: redis.Redis, config: Config, start_us: int) -> None:
    """Every tenant's last hour holds ZIA's 40 activations, one per 90 s on a phase of its own,
    and every tenant has changes waiting."""
    spacing = HOUR / ACTIVATIONS_PER_HOUR
    for k, zia in enumerate(sorted(config.zia.values(), key=lambda z: z.tenant_id)):
        phase = spacing * k / TENANTS
        scores = {
            f"past-{j}": start_us - round((phase + spacing * j) * SECOND)
            for j in range(ACTIVATIONS_PER_HOUR)
        }
        client.zadd(keys.tenant_limit(zia.tenant_id, ACTIVATE_BUCKET), scores)
        ActivationMarks(client).mark_unactivated(zia.tenant_id)


@pytest.mark.slow
def test_a_new_instance_of_a_paced_tenant_runs_within_an_interval_and_an_activation_slot(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    """In a fleet of 1,000 instances on 100 paced tenants, with more runs due than its six
    workers can do, every instance that never ran (one per tenant) has its first run within
    one interval plus one activation slot, and the established ones keep their rounds."""
    config = write_config(tmp_path, redis_url)
    names = sorted(config.instances)
    new = {name for n, name in enumerate(names) if n % 10 == 3}  # 100 new, one per tenant
    for name in names:
        if name not in new:
            redis_client.hset(keys.instance_state(name), "state", "ok")
    start_us = int(redis_client.time()[0]) * SECOND
    paced_history(redis_client, config, start_us)
    fleet = Fleet(redis_client, config, start_us)
    fleet.first_run_at = {name: -1.0 for name in names if name not in new}
    scheduler = Scheduler(config, redis_client)
    rounds = 0
    real_started = time.monotonic()
    next_tick = 0.0
    while fleet.now <= FIRST_RUN_BOUND_S + ROUND_LEAD and time.monotonic() - real_started < 240:
        if fleet.now >= next_tick:
            for job_id in scheduler.tick(fleet.now_us):
                fleet.queued_at[job_id] = fleet.now
                rounds += job_id.startswith("round-")
            next_tick += scheduler.tick_every
        fleet.step()
        if new <= set(fleet.first_run_at) and fleet.now > PACED_GAP + ROUND_LEAD:
            break
        fleet.now += STEP_S

    late = {name: fleet.first_run_at.get(name) for name in new}
    never = sorted(name for name, at in late.items() if at is None)
    assert not never, f"{len(never)} new instances never ran, e.g. {never[:5]}"
    slowest = max(at for at in late.values() if at is not None)
    assert slowest <= FIRST_RUN_BOUND_S, slowest
    # The fleet was busy with its established instances all along: rounds ran, and slot
    # jobs were dropped for want of workers (the load the first runs had to get through).
    assert rounds >= 100, rounds
    assert fleet.dropped > 0
