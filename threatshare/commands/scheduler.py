"""``threatshare scheduler``: one sync job per instance per interval."""

from __future__ import annotations

import argparse

from threatshare.commands.base import CONFIG_CODE, EXIT_OK, REDIS_CODE, UNEXPECTED_CODE, Command
from threatshare.commands.reach import ensure_reachable
from threatshare.config import Config


def _scheduler(args: argparse.Namespace, config: Config) -> int:
    from workers.scheduler import run_scheduler

    # Checked once at the start; afterwards the scheduler outlives a restart of Redis.
    ensure_reachable(config)
    return run_scheduler(config)


COMMAND = Command(
    name="scheduler",
    summary="the fleet's scheduler: one job per instance per interval",
    description="Enqueue one sync job per enabled instance per interval (job ids unique per "
    "instance and time slot, so several schedulers never enqueue twice), the activation "
    "rounds of paced tenants and the alert deliveries, until SIGTERM or SIGINT.",
    examples=("threatshare scheduler",),
    exit_codes=(
        (EXIT_OK, "stopped cleanly"),
        UNEXPECTED_CODE,
        CONFIG_CODE,
        (REDIS_CODE[0], REDIS_CODE[1] + " (at the start; later it waits for Redis)"),
    ),
    handler=_scheduler,
)
