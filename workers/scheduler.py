"""``threatshare scheduler``: puts the fleet's jobs on the queue (S9).

Every few seconds a tick enqueues

- one sync job per enabled instance per ``interval`` slot, with the id ``sync-<name>-<slot>``
  (``slot = epoch // interval``) and ``unique=True``: every scheduler computes the same id for
  the same slot, so however many schedulers run (for availability), RQ accepts the first and
  refuses the others with ``DuplicateJobError``. No leader election is needed (arq's cron does
  the same). The clock is Redis' ``TIME``, one clock for schedulers on any machine;
- one activation job per ZIA tenant with staged, unactivated changes, coalesced to one per
  tenant per :data:`COALESCE` seconds and paced by the tenant's activations of the last hour
  (:func:`activation_due`), so a change goes live within seconds while budget is plentiful and
  never faster than ZIA's 40 an hour allows in the long run. The tenant stays marked until an
  activation succeeds, so a failed or skipped activation is simply enqueued again;
- one delivery round of the alert outbox while it holds alerts.

Activations and deliveries go to the front of the queue: they are short, and a change waiting
behind a slot's worth of sync jobs would wait for nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
import structlog
from rq import Queue
from rq.exceptions import DuplicateJobError
from rq.serializers import JSONSerializer

from threatshare import keys
from threatshare.alerts.outbox import Outbox
from threatshare.config import Config
from threatshare.connection import redis_for
from threatshare.state.activation_marks import ActivationMarks
from threatshare.zia.activation import tenants_by_id
from workers import jobs

log = structlog.get_logger(__name__)

#: Seconds of one activation (and alert delivery) slot: changes made within it share one
#: activation.
COALESCE = 10
#: ZIA allows 40 activations an hour per tenant (reference §4). Below half of that in the last
#: hour, a tenant is activated once per slot; from there on, once per PACED_GAP, which sustains
#: under 40 an hour and leaves room for a ``run --once`` now and then.
ACTIVATIONS_PER_HOUR = 40
PACE_FROM = ACTIVATIONS_PER_HOUR // 2
PACED_GAP = 3600 / ACTIVATIONS_PER_HOUR * 1.05
ACTIVATE_BUCKET = "POST /status/activate"
#: Above the run deadline, so a run ends by its own deadline, not by RQ's death penalty.
JOB_TIMEOUT_MARGIN = timedelta(seconds=30)
FAILED_JOB_TTL = 24 * 3600
MAX_TICK = 5.0


@dataclass(frozen=True)
class JobSpec:
    """How one kind of job goes on the queue, said once (as arq's ``CronJob`` does).

    ``ttl``: a job still queued after it is dropped (the next slot's job replaces it);
    ``result_ttl``: how long a finished job keeps its id taken, which is what makes the slot's
    id unique for the rest of the slot, and only that long."""

    func: Callable[..., Any]
    timeout: int
    ttl: int
    result_ttl: int
    at_front: bool = False

    def options(self) -> dict[str, Any]:
        return {
            "job_timeout": self.timeout,
            "ttl": self.ttl,
            "result_ttl": self.result_ttl,
            "failure_ttl": FAILED_JOB_TTL,
            "at_front": self.at_front,
        }


@dataclass(frozen=True)
class TenantActivations:
    """A tenant's activations within the last hour, from the fleet's rate limiter."""

    last_hour: int
    seconds_since_last: float | None


def activation_due(recent: TenantActivations) -> bool:
    """Whether a marked tenant may get an activation job now (the limiter has the last word)."""
    if recent.last_hour >= ACTIVATIONS_PER_HOUR:
        return False
    if recent.last_hour < PACE_FROM or recent.seconds_since_last is None:
        return True
    return recent.seconds_since_last >= PACED_GAP


def recent_activations(client: redis.Redis, tenant_id: str, now_us: int) -> TenantActivations:
    """Read the limiter's log of the tenant's activation calls (a sorted set scored in
    microseconds of Redis time; see :mod:`threatshare.zia.ratelimit`)."""
    key = keys.tenant_limit(tenant_id, ACTIVATE_BUCKET)
    hour_ago = now_us - 3600 * 1_000_000
    count = int(client.zcount(key, hour_ago, "+inf"))
    newest = client.zrevrange(key, 0, 0, withscores=True)
    since = (now_us - float(newest[0][1])) / 1_000_000 if newest else None
    return TenantActivations(count, since)


def fleet_queue(client: redis.Redis) -> Queue:
    """The queue every scheduler and worker of the fleet shares (JSON: nothing is unpickled)."""
    return Queue(keys.QUEUE, connection=client, serializer=JSONSerializer)


class Scheduler:
    """Enqueues the jobs that are due; :meth:`tick` is one pass, :meth:`run` loops."""

    def __init__(self, config: Config, client: redis.Redis) -> None:
        self.config = config
        self.redis = client
        self.queue = fleet_queue(client)
        self.marks = ActivationMarks(client)
        self.outbox = Outbox(client)
        self.tenants = tenants_by_id(config.zia)
        settings = config.settings
        self.interval = max(1, round(settings.interval.total_seconds()))
        sync_timeout = round((settings.run_deadline + JOB_TIMEOUT_MARGIN).total_seconds())
        activation_timeout = round(jobs.ACTIVATION_DEADLINE) + 30
        self.sync = JobSpec(jobs.sync_job, sync_timeout, self.interval, 2 * self.interval)
        self.activation = JobSpec(
            jobs.activate_job, activation_timeout, activation_timeout, 2 * COALESCE, at_front=True
        )
        self.delivery = JobSpec(jobs.deliver_alerts_job, 300, 300, 2 * COALESCE, at_front=True)

    @property
    def tick_every(self) -> float:
        """Often enough that a slot's jobs are queued within a fifth of it."""
        return min(MAX_TICK, self.interval / 5)

    def _now_us(self) -> int:
        seconds, micros = self.redis.time()
        return int(seconds) * 1_000_000 + int(micros)

    def _enqueue(self, spec: JobSpec, job_id: str, *args: Any, description: str) -> bool:
        try:
            self.queue.enqueue(
                spec.func,
                *args,
                job_id=job_id,
                unique=True,
                description=description,
                **spec.options(),
            )
        except DuplicateJobError:
            return False  # another scheduler (or an earlier tick) was first
        return True

    def tick(self) -> list[str]:
        """Enqueue what is due now; returns the ids this call enqueued."""
        now_us = self._now_us()
        now = now_us // 1_000_000
        enqueued = [
            *self._sync_jobs(now // self.interval),
            *self._activation_jobs(now_us, now // COALESCE),
            *self._delivery_job(now // COALESCE),
        ]
        if enqueued:
            log.info("scheduler.enqueued", jobs=len(enqueued))
        return enqueued

    def _sync_jobs(self, slot: int) -> Iterator[str]:
        for name in self.config.enabled_instances():
            job_id = keys.scheduler_slot(name, slot)
            if self._enqueue(self.sync, job_id, name, description=f"sync {name}"):
                yield job_id

    def _activation_jobs(self, now_us: int, slot: int) -> Iterator[str]:
        for tenant_id in self.marks.unactivated_tenants():
            if tenant_id not in self.tenants:
                continue  # a tenant of another configuration sharing this Redis
            if not activation_due(recent_activations(self.redis, tenant_id, now_us)):
                continue
            job_id = keys.activation_slot(tenant_id, slot)
            description = f"activate {self.tenants[tenant_id]}"
            if self._enqueue(self.activation, job_id, tenant_id, description=description):
                yield job_id

    def _delivery_job(self, slot: int) -> Iterator[str]:
        if self.outbox.pending() == 0:
            return
        job_id = keys.delivery_slot(slot)
        if self._enqueue(self.delivery, job_id, description="deliver alerts"):
            yield job_id

    def run(self, stop: threading.Event) -> None:
        """Tick until ``stop`` is set. Redis trouble is logged and retried at the next tick:
        a scheduler outlives a Redis restart."""
        log.info("scheduler.start", interval=self.interval, instances=len(self.config.instances))
        while not stop.is_set():
            try:
                self.tick()
            except redis.RedisError as exc:
                log.warning("scheduler.redis_unavailable", error=type(exc).__name__)
            stop.wait(self.tick_every)
        log.info("scheduler.stop")


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT end the loop after the current tick (main thread only)."""

    def handle(signum: int, _frame: object) -> None:
        log.info("scheduler.signal", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def run_scheduler(config: Config) -> int:
    """The ``threatshare scheduler`` command: tick until SIGTERM or SIGINT; exit 0."""
    stop = threading.Event()
    stop_on_signals(stop)
    with redis_for(config) as client:
        Scheduler(config, client).run(stop)
    return 0
