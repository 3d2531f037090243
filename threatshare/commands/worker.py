"""``threatshare worker``: an RQ worker of the fleet."""

from __future__ import annotations

import argparse

from threatshare.commands.base import CONFIG_CODE, EXIT_OK, REDIS_CODE, UNEXPECTED_CODE, Command
from threatshare.commands.reach import ensure_reachable
from threatshare.config import Config


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")


def _worker(args: argparse.Namespace, config: Config) -> int:
    from workers.worker import run_worker

    ensure_reachable(config)  # said in one line now, not in RQ's traceback later
    return run_worker(config, burst=args.burst)


COMMAND = Command(
    name="worker",
    summary="an RQ worker of the fleet",
    description="Run the fleet's sync, activation and alert jobs from the queue 'threatshare' "
    "until SIGTERM or SIGINT (the first finishes the current run, a second abandons it "
    "safely). Start as many as needed, on as many machines as needed.",
    examples=("threatshare worker", "threatshare worker --burst"),
    exit_codes=(
        (EXIT_OK, "stopped cleanly (with --burst: the queue is empty)"),
        UNEXPECTED_CODE,
        CONFIG_CODE,
        REDIS_CODE,
    ),
    handler=_worker,
    arguments=_arguments,
)
