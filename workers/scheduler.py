"""``threatshare scheduler``: puts the fleet's jobs on the queue (docs/design.md#the-fleet).

Every second a tick enqueues

- one sync job per enabled instance per ``interval`` slot, with the id ``sync-<name>-<slot>``
  (``slot = epoch // interval``) and ``unique=True``: every scheduler computes the same id for
  the same slot, so however many schedulers run (for availability), RQ accepts the first and
  refuses the others with ``DuplicateJobError``. No leader election is needed (arq's cron does
  the same). The clock is Redis' ``TIME``, one clock for schedulers on any machine, and an
  input of :meth:`Scheduler.tick`;
- for each *paced* ZIA tenant (its last hour holds half of ZIA's hourly activations), a round: one
  more run of each of its instances, ``round-<name>-<cycle>``, just before its next activation
  is allowed, so what they push is what that activation makes live (:mod:`workers.pacing`
  explains the latency budget). ``cycle`` is the second of the tenant's last activation, read
  from the fleet limiter's log, so every scheduler names a round alike;
- one activation job per ZIA tenant with staged, unactivated changes, coalesced to one per
  tenant per :data:`COALESCE` seconds and paced by the tenant's activations of the last hour
  (:func:`~workers.pacing.activation_due`): within seconds while budget is plentiful, and for a
  paced tenant once its gap has passed and its round is done. The tenant stays marked until an
  activation succeeds, so a failed or skipped activation is simply enqueued again;
- one delivery round of the alert outbox while it holds alerts.

Rounds, activations and deliveries go to the front of the queue: they are short, and a change
waiting behind a slot's worth of sync jobs would wait for nothing. A new instance's first run
goes ahead even of them, on a queue of its own; :mod:`workers.slots` says why, and in which
order a slot's jobs are queued.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
import structlog
from rq import Queue
from rq.exceptions import DuplicateJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from threatshare import keys
from threatshare.alerts.outbox import Outbox
from threatshare.config import Config
from threatshare.connection import redis_for
from threatshare.state.activation_marks import ActivationMarks
from threatshare.state.store import Store
from threatshare.sync.activation import adopt_former_marks, tenants_by_id
from workers import jobs, slots
from workers.pacing import (
    HOUR,
    PACED_GAP,
    ROUND_LEAD,
    ROUND_WAIT,
    TenantActivations,
    activation_due,
    recent_from_log,
    round_for,
)

__all__ = [
    "ACTIVATE_BUCKET",
    "PACED_GAP",
    "Scheduler",
    "TenantActivations",
    "activation_due",
    "first_run_queue",
    "fleet_queue",
    "recent_activations",
]

log = structlog.get_logger(__name__)

#: Seconds of one activation (and alert delivery) slot: changes made within it share one
#: activation.
COALESCE = 10
ACTIVATE_BUCKET = "POST /status/activate"
#: Above the run deadline, so a run ends by its own deadline, not by RQ's death penalty.
JOB_TIMEOUT_MARGIN = timedelta(seconds=30)
FAILED_JOB_TTL = 24 * 3600
#: A second between ticks: a round's activation follows its last run within about that.
MAX_TICK = 1.0
#: A round's run still queued when its activation has gone ahead is dropped.
ROUND_JOB_TTL = round(ROUND_LEAD + ROUND_WAIT)
_DONE = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}


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


def recent_activations(client: redis.Redis, tenant_id: str, now_us: int) -> TenantActivations:
    """Read the limiter's log of the tenant's activation calls (a sorted set scored in
    microseconds of Redis time; see :mod:`threatshare.zia.ratelimit`)."""
    return recent_activations_of(client, [tenant_id], now_us)[tenant_id]


def recent_activations_of(
    client: redis.Redis, tenant_ids: list[str], now_us: int
) -> dict[str, TenantActivations]:
    """:func:`recent_activations` of many tenants in one round trip (a tick reads them all)."""
    hour_ago = now_us - round(HOUR * 1_000_000)
    with client.pipeline(transaction=False) as pipe:
        for tenant_id in tenant_ids:
            key = keys.tenant_limit(tenant_id, ACTIVATE_BUCKET)
            pipe.zrangebyscore(key, f"({hour_ago}", "+inf", withscores=True)
        logs = pipe.execute()
    return {
        tenant_id: recent_from_log([score / 1_000_000 for _, score in logged], now_us / 1_000_000)
        for tenant_id, logged in zip(tenant_ids, logs, strict=True)
    }


def instances_by_tenant(config: Config) -> dict[str, list[str]]:
    """Tenant id -> the enabled instances that push to it."""
    out: dict[str, list[str]] = {}
    for name in config.enabled_instances():
        out.setdefault(config.zia[config.instances[name].zia].tenant_id, []).append(name)
    return out


def fleet_queue(client: redis.Redis) -> Queue:
    """The queue every scheduler and worker of the fleet shares (JSON: nothing is unpickled)."""
    return Queue(keys.QUEUE, connection=client, serializer=JSONSerializer)


def first_run_queue(client: redis.Redis) -> Queue:
    """The queue of new instances' first runs, which workers empty before :func:`fleet_queue`
    (see :mod:`workers.slots`)."""
    return Queue(keys.FIRST_RUN_QUEUE, connection=client, serializer=JSONSerializer)


class Scheduler:
    """Enqueues the jobs that are due; :meth:`tick` is one pass, :meth:`run` loops."""

    def __init__(self, config: Config, client: redis.Redis) -> None:
        self.config = config
        self.redis = client
        self.queue = fleet_queue(client)
        self.first_runs = first_run_queue(client)
        self.marks = ActivationMarks(client)
        self.outbox = Outbox(client)
        self.tenants = tenants_by_id(config.zia)
        self.instances_of = instances_by_tenant(config)
        self.slot_order = slots.interleaved(self.instances_of)
        self.store = Store(client)
        settings = config.settings
        self.interval = max(1, round(settings.interval.total_seconds()))
        sync_timeout = round((settings.run_deadline + JOB_TIMEOUT_MARGIN).total_seconds())
        activation_timeout = round(jobs.ACTIVATION_DEADLINE) + 30
        self.sync = JobSpec(jobs.sync_job, sync_timeout, self.interval, 2 * self.interval)
        # A round's run not started by the time its activation goes ahead is dropped; its id
        # stays taken, and its outcome readable, a while past that.
        self.round = JobSpec(
            jobs.sync_job, sync_timeout, ROUND_JOB_TTL, 2 * ROUND_JOB_TTL, at_front=True
        )
        self.activation = JobSpec(
            jobs.activate_job, activation_timeout, activation_timeout, 2 * COALESCE, at_front=True
        )
        self.delivery = JobSpec(jobs.deliver_alerts_job, 300, 300, 2 * COALESCE, at_front=True)
        # What this scheduler already saw queued (by itself or another): the slot of each
        # instance, the round of each tenant. Saves an enqueue attempt per instance per tick.
        self._slot_taken: dict[str, int] = {}
        self._round_taken: dict[str, int] = {}
        self._activation_taken: dict[str, int] = {}

    @property
    def tick_every(self) -> float:
        """Often enough that a slot's jobs are queued within a fifth of it, and that a round's
        activation follows its last run within a second."""
        return min(MAX_TICK, self.interval / 5)

    def _now_us(self) -> int:
        seconds, micros = self.redis.time()
        return int(seconds) * 1_000_000 + int(micros)

    def _enqueue(
        self, spec: JobSpec, job_id: str, *args: Any, description: str, queue: Queue | None = None
    ) -> bool:
        try:
            (queue or self.queue).enqueue(
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

    def tick(self, now_us: int | None = None) -> list[str]:
        """Enqueue what is due at ``now_us`` (microseconds; default Redis' ``TIME``); returns
        the ids this call enqueued."""
        now_us = self._now_us() if now_us is None else now_us
        now = now_us // 1_000_000
        recent = recent_activations_of(self.redis, list(self.tenants), now_us)
        enqueued = [
            *self._sync_jobs(now // self.interval),
            *self._round_jobs(recent),
            *self._activation_jobs(recent, now // COALESCE),
            *self._delivery_job(now // COALESCE),
        ]
        if enqueued:
            log.info("scheduler.enqueued", jobs=len(enqueued))
        return enqueued

    def _sync_jobs(self, slot: int) -> Iterator[str]:
        """The slot's job of each instance not yet queued for it, in :mod:`workers.slots`'
        order, tenants interleaved: an instance's first run on the first-run queue, the
        others on the fleet's."""
        due = [n for n in slots.rotated(self.slot_order, slot) if self._slot_taken.get(n) != slot]
        if not due:
            return
        new, seen = slots.first_runs_first(due, self.store.states(due))
        for queue, names in ((self.first_runs, new), (self.queue, seen)):
            for name in names:
                job_id = keys.scheduler_slot(name, slot)
                if self._enqueue(self.sync, job_id, name, description=f"sync {name}", queue=queue):
                    yield job_id
                self._slot_taken[name] = slot

    def _round_jobs(self, recent: Mapping[str, TenantActivations]) -> Iterator[str]:
        """A paced tenant's instances, run just before its next activation (at the front:
        their activation waits for them)."""
        for tenant_id, activations in recent.items():
            found = round_for(activations)
            if found is None or self._round_taken.get(tenant_id) == found.cycle:
                continue
            names = self.instances_of.get(tenant_id, [])
            for name in slots.round_members(names, self.store.states(names)):
                job_id = keys.round_slot(name, found.cycle)
                description = f"sync {name} before activation"
                if self._enqueue(self.round, job_id, name, description=description):
                    yield job_id
            self._round_taken[tenant_id] = found.cycle

    def _round_pending(self, tenant_id: str, activations: TenantActivations) -> bool:
        """Whether a run of the round since the tenant's last activation is still queued or
        running (a job that is gone, dropped or never enqueued is not)."""
        if not activations.paced or activations.newest_at is None:
            return False
        cycle = int(activations.newest_at)
        ids = [keys.round_slot(name, cycle) for name in self.instances_of.get(tenant_id, ())]
        # The status alone, in one round trip: restoring whole jobs every tick of every paced
        # tenant was most of a large fleet's scheduler CPU.
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hget(Job.key_for(job_id), "status")
            statuses = pipe.execute()
        return any(raw is not None and raw.decode() not in _DONE for raw in statuses)

    def _refused_and_halted(self, tenant_id: str) -> bool:
        """ZIA refused to activate the tenant and every instance of it is still halted: a new
        try waits for `resume` (or a configuration change) instead of retrying in vain."""
        if self.marks.refusal(tenant_id) is None:
            return False
        store = Store(self.redis)
        return all(store.load(n).state == "halted" for n in self.instances_of.get(tenant_id, ()))

    def _activation_jobs(self, recent: Mapping[str, TenantActivations], slot: int) -> Iterator[str]:
        adopt_former_marks(self.marks, self.config.zia)
        for tenant_id in self.marks.unactivated_tenants():
            if tenant_id not in self.tenants:
                continue  # a tenant of another configuration sharing this Redis
            if self._refused_and_halted(tenant_id):
                continue
            activations = recent[tenant_id]
            if not activation_due(activations):
                continue  # the budget does not allow one yet
            if not activation_due(activations, self._round_pending(tenant_id, activations)):
                continue  # the last runs of its round are still pushing
            if self._activation_taken.get(tenant_id) == slot:
                continue  # queued this slot already (by this scheduler or another)
            job_id = keys.activation_slot(tenant_id, slot)
            description = f"activate {self.tenants[tenant_id]}"
            if self._enqueue(self.activation, job_id, tenant_id, description=description):
                yield job_id
            self._activation_taken[tenant_id] = slot

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
        ticks, cpu_started = 0, time.thread_time()
        while not stop.is_set():
            try:
                self.tick()
            except redis.RedisError as exc:
                log.warning("scheduler.redis_unavailable", error=type(exc).__name__)
            ticks += 1
            stop.wait(self.tick_every)
        # The CPU of this thread per tick (the scheduler's own cost, whatever else shares the
        # process): how many instances one scheduler can tick for (the fleet bench reads it).
        cpu_ms = 1000 * (time.thread_time() - cpu_started) / max(1, ticks)
        log.info("scheduler.stop", ticks=ticks, cpu_ms_per_tick=round(cpu_ms, 2))


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
