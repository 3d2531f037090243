"""``threatshare run`` without ``--once``: the whole product in one process
(docs/design.md#the-fleet).

The scheduler ticks in a background thread and a :class:`~workers.worker.FleetWorker` works in
the main thread (RQ's job timeout and signal handling need the main thread), on the configured
Redis or, without ``redis_url``, on the embedded one in ``state_dir``, whose append-only file
keeps bookmarks, entries and queued alerts across restarts. It is the fleet with one member:
the same jobs, locks and rate limits, so a second machine can join later by pointing
``redis_url`` at a shared Redis.

With ``settings.listen`` the operations endpoint (docs/design.md#operations-endpoint) serves from a
thread of this process.

SIGTERM or SIGINT: the current run ends at its next check (:mod:`workers.worker`), the
scheduler stops after its tick, and the embedded Redis (if this process started it) is shut
down with its data flushed to disk.
"""

from __future__ import annotations

import sys
import threading

import structlog

from threatshare.config import Config
from threatshare.connection import redis_for
from threatshare.ops.serve import open_endpoint
from workers.jobs import fleet_runtime
from workers.scheduler import Scheduler
from workers.worker import FleetWorker, separate_client, workers_seen

log = structlog.get_logger(__name__)

SCHEDULER_JOIN_TIMEOUT = 10.0


def run_forever(config: Config) -> int:
    """Scheduler and worker until SIGTERM or SIGINT; exit 0 after a clean stop."""
    with redis_for(config, long_lived=True) as client:
        endpoint = None
        if config.settings.listen is not None:
            try:
                # A client of its own: the endpoint's threads never wait behind a run's.
                endpoint = open_endpoint(
                    config, separate_client(client), config.settings.listen, workers_seen
                ).start()
            except OSError as exc:
                print(f"cannot listen on {config.settings.listen}: {exc}", file=sys.stderr)
                return 1
        stop = threading.Event()
        scheduler = threading.Thread(
            target=Scheduler(config, client).run, args=(stop,), name="scheduler", daemon=True
        )
        rt = fleet_runtime(config, client)
        worker = FleetWorker(rt)
        scheduler.start()
        try:
            worker.work(burst=False, with_scheduler=False, logging_level="INFO")
        finally:
            stop.set()
            scheduler.join(timeout=SCHEDULER_JOIN_TIMEOUT)
            worker.connection.close()
            rt.close()
            if endpoint is not None:
                endpoint.close()
    log.info("run.stopped")
    return 0
