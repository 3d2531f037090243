"""``threatshare run``: once, or the whole product in one process until stopped."""

from __future__ import annotations

import argparse
import sys

from threatshare.commands.base import (
    CONFIG_CODE,
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    REDIS_CODE,
    Command,
)
from threatshare.commands.reach import ensure_reachable, reached
from threatshare.config import Config


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--once", action="store_true", help="sync each instance once, then exit")
    parser.add_argument(
        "--instance", action="append", default=[], metavar="NAME", help="only this instance"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="pull and normalise; change nothing in ZIA or state"
    )


def _run(args: argparse.Namespace, config: Config) -> int:
    unknown = [n for n in args.instance if n not in config.instances]
    if unknown:
        print(f"no such instance: {', '.join(unknown)}", file=sys.stderr)
        return EXIT_CONFIG
    if not args.once and not args.dry_run:
        from workers.single import run_forever

        if args.instance:  # only the named instances, for as long as it runs
            chosen = {n: config.instances[n] for n in args.instance}
            config = config.model_copy(update={"instances": chosen})
        ensure_reachable(config)
        return run_forever(config)
    from threatshare.http import RetryPolicy, interactive
    from threatshare.ops.run_once import run_once

    with reached(config) as client:
        return run_once(
            config,
            client,
            args.instance or None,
            dry_run=args.dry_run,
            policy=interactive(RetryPolicy()),
        )


COMMAND = Command(
    name="run",
    summary="sync instances (once, or scheduler and worker until stopped)",
    description="With --once: sync every enabled instance (or those named) once, activate each "
    "changed ZIA tenant, send pending alerts, print a summary. Without it: the scheduler and a "
    "worker in one process until SIGINT or SIGTERM (single-machine mode; with no redis_url it "
    "owns the embedded Redis in state_dir). --dry-run shows what would be pushed and changes "
    "nothing. An unreachable host is given up on within 30 s with --once.",
    examples=(
        "threatshare run --once --dry-run",
        "threatshare run --once --instance impersonation",
        "threatshare run",
    ),
    exit_codes=(
        (EXIT_OK, "--once: every instance ended ok; without it: stopped cleanly"),
        (EXIT_FAILED, "--once: an instance did not end ok; or settings.listen cannot be bound"),
        CONFIG_CODE,
        REDIS_CODE,
    ),
    handler=_run,
    arguments=_arguments,
)
