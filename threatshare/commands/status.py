"""``threatshare status [NAME] [--json]``: the state of every instance."""

from __future__ import annotations

import argparse
import sys

from threatshare.commands.base import EXIT_CONFIG, EXIT_UNREACHABLE, Command
from threatshare.commands.failures import cause_of, redis_place
from threatshare.config import Config
from threatshare.connection import redis_for
from threatshare.errors import StoreUnavailable, redis_errors


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", metavar="NAME", help="only this instance")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _status(args: argparse.Namespace, config: Config) -> int:
    from datetime import UTC, datetime

    from threatshare.ops import status
    from threatshare.state.store import Store

    if args.name and args.name not in config.instances:
        print(f"no instance {args.name!r} in the configuration", file=sys.stderr)
        return EXIT_CONFIG
    try:
        with redis_errors("status"), redis_for(config) as client:
            records = status.collect(config, Store(client), args.name)
            tenants = status.tenant_status(config, Store(client), datetime.now(UTC))
    except StoreUnavailable as exc:
        print(f"status: cannot reach Redis at {redis_place(config)}: {cause_of(exc)}")
        return EXIT_UNREACHABLE
    if args.name:  # the organisation of the instance asked about
        tenants = [t for t in tenants if args.name in t["instances"]]
    table = status.render_table(records, tenants=tenants)
    print(status.render_json(records, tenants) if args.json else table)
    return status.exit_code(records, tenants)


COMMAND = Command(
    name="status",
    summary="state of every instance",
    description="One row per instance: state, bookmark and its age, last success, last error "
    "and since when, entries in the category, the last run's counters, quota used and "
    "remaining; then each ZIA organisation's changes pending activation and since when. NAME "
    'shows one instance; --json prints {"instances": [...], "tenants": [...]}.',
    examples=("threatshare status", "threatshare status impersonation --json"),
    exit_codes=(
        (0, "no instance is retrying or halted"),
        (1, "an instance is retrying, or a tenant's activation is pending over 15 minutes"),
        (2, "an instance is halted; or the configuration is invalid, or NAME is unknown"),
        (3, "Redis cannot be reached, or state_dir's embedded Redis is in use by another process"),
    ),
    handler=_status,
    arguments=_arguments,
)
