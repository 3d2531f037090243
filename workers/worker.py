"""``threatshare worker``: an RQ worker of the fleet, on the queue ``threatshare``
(docs/design.md#the-fleet).

It is a ``SimpleWorker``: jobs run in the worker's own process, one after the other, so one
:class:`~threatshare.runtime.Runtime` (its cached tokens and ZIA sessions) serves every job; see
:mod:`workers.jobs` for why that beats forking a work horse per job here. Each job is still
bounded by RQ's ``job_timeout`` (SIGALRM in the main thread) above the run's own deadline, and
RQ's started-job registry is kept for the whole ``job_timeout``.

Shutdown. A worker stops within a few seconds of SIGTERM or SIGINT, whatever it is doing, as
Kubernetes expects (it kills a pod 30 s after SIGTERM). The first signal is a warm shutdown:
the worker takes no further job, and the job in progress is told to end. The worker's runtime
has a run-deadline clock that jumps past every deadline at that moment and a sleep that
returns at once, so the run ends at its next check (between pages, between chunks, before a
retry or a wait for ZIA's budget) through its ordinary path: the bookmark stays where the last
fully shared chunk put it. A run still going :data:`STOP_GRACE` seconds later (a call to a
hung upstream) is abandoned where it stands, as on a second signal (a cold shutdown). That is
safe by design: the bookmark moves only after a fully shared chunk, fenced by the run's lock;
what was pushed is pushed again by the next run, harmlessly; the run's lock is released on the
way out, or its lease lapses within seconds. A worker killed outright leaves the same state.

RQ's own teardown would wait up to a minute for its pub/sub thread (redis-py's ``stop()``
joins a thread that may be in a 60 s wait); :class:`FleetWorker` polls that channel every
:data:`PUBSUB_POLL` seconds instead, so stopping never waits on it.

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

import os
import signal
import threading
import time
from typing import Any

import redis
import structlog
from rq import SimpleWorker
from rq.job import Job
from rq.queue import Queue
from rq.serializers import JSONSerializer
from rq.worker import WorkerStatus

from threatshare.config import Config
from threatshare.connection import redis_for
from threatshare.runtime import Runtime
from threatshare.scrub import clean_line
from workers.jobs import JOB_FUNCTIONS, fleet_runtime, using_runtime
from workers.scheduler import first_run_queue, fleet_queue

log = structlog.get_logger(__name__)

#: Seconds a run has to end by itself after SIGTERM before it is abandoned where it stands.
STOP_GRACE = 5.0
#: How far the run-deadline clock jumps when the worker is asked to stop: past any deadline.
STOP_JUMP = 10 * 365 * 24 * 3600.0
#: Seconds between two looks of the pub/sub thread at whether the worker is stopping.
PUBSUB_POLL = 1.0


class StopSignal:
    """The stop request a worker's runs see: a deadline clock and a sleep that both know it.

    ``monotonic`` is the runtime's run-deadline clock (:attr:`Runtime.monotonic`): once
    :meth:`set`, it reads :data:`STOP_JUMP` ahead, so every deadline of the run in progress
    has passed at its next check. ``sleep`` returns at once when stopping."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def set(self) -> None:
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()

    def monotonic(self) -> float:
        return time.monotonic() + (STOP_JUMP if self.event.is_set() else 0.0)

    def sleep(self, seconds: float) -> None:
        self.event.wait(max(0.0, seconds))


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
        # In this order: a new instance's first run before anything else (workers.slots).
        queues = [first_run_queue(connection), fleet_queue(connection)]
        super().__init__(queues, connection=connection, **kwargs)
        self.stop_signal = StopSignal()
        runtime.monotonic = self.stop_signal.monotonic
        runtime.sleep = self.stop_signal.sleep
        self.runtime = runtime
        self._abandon: threading.Timer | None = None

    def handle_warm_shutdown_request(self) -> None:
        """The first SIGTERM or SIGINT: the job in progress ends at its next check, or is
        abandoned :data:`STOP_GRACE` seconds later (see the module's docstring)."""
        super().handle_warm_shutdown_request()
        self.stop_signal.set()
        if self.get_state() == WorkerStatus.BUSY and self._abandon is None:
            log.info("worker.stopping", grace_s=STOP_GRACE)
            # A second signal is RQ's cold shutdown (SystemExit in the job, wherever it is).
            self._abandon = threading.Timer(STOP_GRACE, os.kill, (os.getpid(), signal.SIGTERM))
            self._abandon.daemon = True
            self._abandon.start()

    def subscribe(self) -> None:
        """RQ's subscription to its command channel, polled every :data:`PUBSUB_POLL` s (RQ
        waits 60 s, which its teardown then waits out)."""
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=PUBSUB_POLL, daemon=True, exception_handler=self._pubsub_exception_handler
        )

    def teardown(self) -> None:
        if self._abandon is not None:
            self._abandon.cancel()
        super().teardown()

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
