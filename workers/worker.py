"""``threatshare worker``: an RQ worker of the fleet, on the queue ``threatshare``
(docs/design.md#the-fleet).

It is a ``SimpleWorker``: jobs run in the worker's own process, one after the other, so one
:class:`~threatshare.runtime.Runtime` (its cached tokens and ZIA sessions) serves every job; see
:mod:`workers.jobs` for why that beats forking a work horse per job here. Each job is still
bounded by RQ's ``job_timeout`` (SIGALRM in the main thread) above the run's own deadline, and
RQ's started-job registry is kept for the whole ``job_timeout``.

Shutdown. The first SIGTERM or SIGINT is a warm shutdown: the current run finishes (it ends by
its deadline) and the worker exits 0. A second one is a cold shutdown: the run is abandoned
where it stands, which is safe by design (the bookmark moves only at the very end, fenced by the
run's lock; what was pushed is pushed again by the next run, harmlessly), and its lock lease
lapses within seconds. A worker killed outright leaves the same state.

Allow-list. Anyone who can write to Redis can put a job on the queue, and RQ would import and
call whatever function it names (the JSON serializer prevents unpickling, not that). A
:class:`FleetJob` resolves its function only when its name is one of
:data:`workers.jobs.JOB_FUNCTIONS`, checked before anything is imported; any other job fails
without being called, is logged, and stays in RQ's failed registry (docs/design.md#security).
Callbacks named by a job are never imported either: threatshare enqueues none.

The worker runs no RQ scheduler: the fleet's schedule is ``threatshare scheduler``'s
(:mod:`workers.scheduler`), and no job is enqueued for later.
"""

from __future__ import annotations

from typing import Any

import redis
import structlog
from rq import SimpleWorker
from rq.job import Job
from rq.queue import Queue
from rq.serializers import JSONSerializer

from threatshare.config import Config
from threatshare.connection import redis_for
from threatshare.runtime import Runtime
from threatshare.scrub import clean_line
from workers.jobs import JOB_FUNCTIONS, fleet_runtime, using_runtime
from workers.scheduler import fleet_queue

log = structlog.get_logger(__name__)


def separate_client(client: redis.Redis) -> redis.Redis:
    """A client of the same server with its own connection pool. RQ raises the socket timeout
    of its connection to outlast a blocking dequeue (minutes); the runs keep their short one."""
    pool = client.connection_pool
    return redis.Redis(
        connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class, **dict(pool.connection_kwargs)
        )
    )


class JobRefused(Exception):
    """A job on the fleet's queue names a function threatshare does not run."""


class FleetJob(Job):
    """An RQ job that runs only threatshare's own job functions (:data:`JOB_FUNCTIONS`)."""

    @property
    def func(self) -> Any:
        name = self.func_name
        if name not in JOB_FUNCTIONS or self.instance is not None or self._names_callbacks():
            shown = clean_line(name, 120)
            log.error("job.refused", job_id=self.id, function=shown)
            raise JobRefused(f"job {self.id} names {shown!r}, which is not a threatshare job")
        return super().func

    def _names_callbacks(self) -> bool:
        names = (self._success_callback_name, self._failure_callback_name)
        return any(names) or bool(getattr(self, "_stopped_callback_name", None))

    # Callbacks are functions named in Redis too; threatshare uses none, so none is imported.
    @property
    def success_callback(self) -> None:
        return None

    @property
    def failure_callback(self) -> None:
        return None

    @property
    def stopped_callback(self) -> None:
        return None


class FleetWorker(SimpleWorker):
    """An in-process RQ worker that lends its runtime to every job it runs, and runs only
    threatshare's job functions (:class:`FleetJob`)."""

    def __init__(self, runtime: Runtime, **kwargs: Any) -> None:
        kwargs.setdefault("serializer", JSONSerializer)
        kwargs["job_class"] = FleetJob
        connection = separate_client(runtime.redis)
        super().__init__([fleet_queue(connection)], connection=connection, **kwargs)
        self.runtime = runtime

    def execute_job(self, job: Job, queue: Queue) -> None:
        structlog.contextvars.bind_contextvars(job_id=job.id)
        try:
            with using_runtime(self.runtime):
                super().execute_job(job, queue)
        finally:
            structlog.contextvars.unbind_contextvars("job_id")


def workers_seen(client: redis.Redis) -> int:
    """The fleet's workers registered in RQ (for the operations endpoint)."""
    return SimpleWorker.count(connection=client, queue=fleet_queue(client))


def run_worker(config: Config, *, burst: bool) -> int:
    """The ``threatshare worker`` command: work until stopped (or, with ``burst``, until the
    queue is empty); exit 0 after a warm shutdown."""
    with redis_for(config, long_lived=True) as client:
        rt = fleet_runtime(config, client)
        worker = FleetWorker(rt)
        try:
            worker.work(burst=burst, with_scheduler=False, logging_level="INFO")
        finally:
            worker.connection.close()
            rt.close()
    return 0
