"""The RQ jobs of the fleet: thin wrappers around one sync, one activation, one alert round.

Arguments are plain JSON (an instance name, a tenant id), so producer and worker agree whatever
their versions, and nothing in Redis is ever unpickled.

Token reuse. RQ's default ``Worker`` forks a work horse per job, and whatever the horse caches in
memory (OAuth tokens, a legacy ZIA session) dies with it: every run would fetch two tokens, and a
legacy tenant would open a session per run against its 1,000-an-hour limit. Tokens are secrets,
so caching them in Redis is not an option (docs/design.md#configuration). The fleet's worker
therefore runs jobs in its own process (:class:`workers.worker.FleetWorker`, a ``SimpleWorker``) and
lends each job its long-lived :class:`Runtime` through :func:`using_runtime`: consecutive runs reuse
the credentials it caches (a token until shortly before it expires). Under any other RQ worker a
job builds a runtime from the configuration file (``$THREATSHARE_CONFIG``) and discards it at
the end: correct, only slower.

Run lease. A run holds its instance's lock for one :func:`lease_for` period at a time and
renews it while it lives (:meth:`threatshare.state.lock.RunLock.kept_alive`). A worker that dies
(SIGKILL, OOM, a lost machine) stops renewing, so its instance is free again within one lease,
and the next slot's job runs it (docs/design.md#the-fleet: "within about two intervals").
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator
from typing import Any

import redis
import structlog

from threatshare.alerts.outbox import Outbox
from threatshare.config import Config
from threatshare.http import Deadline
from threatshare.runtime import Runtime
from threatshare.sync import halt_refused_tenants, sync_instance
from threatshare.sync.activation import activate_tenant, tenants_by_id

log = structlog.get_logger(__name__)

#: How long an activation job may wait for ZIA's activation budget before it gives up; the
#: tenant stays marked and the scheduler enqueues another activation later.
ACTIVATION_DEADLINE = 60.0
MIN_LEASE = 5.0
MAX_LEASE = 30.0

_runtime: contextvars.ContextVar[Runtime | None] = contextvars.ContextVar(
    "threatshare_runtime", default=None
)


def lease_for(config: Config) -> float:
    """Half an interval, between 5 and 30 seconds: short enough that a dead worker's instance
    runs again in the next slot or the one after, long enough to survive a slow Redis call."""
    half_interval = config.settings.interval.total_seconds() / 2
    return min(MAX_LEASE, max(MIN_LEASE, half_interval))


def fleet_runtime(config: Config, client: redis.Redis) -> Runtime:
    return Runtime(config, client, lock_lease=lease_for(config))


@contextlib.contextmanager
def using_runtime(rt: Runtime) -> Iterator[None]:
    """Lend ``rt`` to the jobs run inside this block (in this thread)."""
    token = _runtime.set(rt)
    try:
        yield
    finally:
        _runtime.reset(token)


@contextlib.contextmanager
def _job_runtime() -> Iterator[Runtime]:
    lent = _runtime.get()
    if lent is not None:
        yield lent
        return
    from rq import get_current_job

    from threatshare import config as config_module

    config = config_module.load(config_module.resolve_path(None))
    job = get_current_job()
    client = job.connection if job is not None else None
    if client is None:  # pragma: no cover - jobs always run under a worker
        raise RuntimeError("a threatshare job needs an RQ worker's Redis connection")
    rt = fleet_runtime(config, client)
    try:
        yield rt
    finally:
        rt.close()


def sync_job(instance: str) -> dict[str, Any]:
    """One run of ``instance``; the result is a small summary (RQ keeps it ``result_ttl``)."""
    with _job_runtime() as rt:
        if instance not in rt.config.instances:
            # A scheduler with a newer configuration than this worker's: its next one will do.
            log.warning("job.unknown_instance", instance=instance)
            return {"instance": instance, "outcome": "unknown_instance"}
        result = sync_instance(rt, instance)
    return {
        "instance": instance,
        "outcome": result.outcome,
        "run_id": result.run_id,
        "pushed": result.counters.pushed,
    }


def activate_job(tenant_id: str) -> dict[str, Any]:
    """Activate the staged changes of one ZIA organisation (``tenant_id``; a no-op when none
    are marked); a permanent refusal halts its instances."""
    with _job_runtime() as rt:
        name = tenants_by_id(rt.config.zia).get(tenant_id)
        if name is None:
            log.warning("job.unknown_tenant", tenant_id=tenant_id)
            return {"zia": None, "activated": False}
        deadline = Deadline.after(ACTIVATION_DEADLINE, rt.monotonic)
        activation = activate_tenant(rt, name, deadline)
        # A permanent refusal halts the organisation's instances: never a quiet retry.
        halted = halt_refused_tenants(rt, [activation])
    return {
        "zia": name,
        "activated": activation.activated,
        "error": activation.error,
        "halted": halted,
    }


def deliver_alerts_job() -> dict[str, int]:
    """One delivery round of the alert outbox (docs/design.md#alerts); SMTP trouble leaves alerts
    queued."""
    with _job_runtime() as rt:
        delivery = Outbox(rt.redis).deliver_for(rt.config)
    return dataclasses.asdict(delivery)


#: The only functions a fleet worker runs, by the dotted name RQ stores in a job
#: (docs/design.md#security: Redis is trusted with state, not with code). Written out rather than
#: derived from the functions, so a rename cannot widen the list.
JOB_FUNCTIONS: frozenset[str] = frozenset(
    {
        "workers.jobs.sync_job",
        "workers.jobs.activate_job",
        "workers.jobs.deliver_alerts_job",
    }
)
