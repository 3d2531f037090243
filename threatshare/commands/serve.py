"""``threatshare serve``: the read-only operations endpoint (docs/design.md#operations-endpoint)."""

from __future__ import annotations

import argparse
import sys

from threatshare.commands.base import (
    CONFIG_CODE,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    REDIS_CODE,
    Command,
)
from threatshare.config import Config


def _listen(value: str) -> str:
    from threatshare.config.listen import parse_listen

    try:
        parse_listen(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        type=_listen,
        metavar="HOST:PORT",
        help="address to bind (default: settings.listen, else 127.0.0.1:9410)",
    )


def _serve(args: argparse.Namespace, config: Config) -> int:
    from threatshare.embedded import StateDirInUse, holder_of, running_url
    from threatshare.ops.serve import endpoint_client, endpoint_url, serve
    from workers.worker import workers_seen

    state_dir = config.settings.resolved_state_dir
    if config.settings.redis_url is None and running_url(state_dir) is None:
        if (holder := holder_of(state_dir)) is not None:
            raise StateDirInUse(state_dir, holder.pid, "its Redis does not answer")
        print(
            f"serve: no `threatshare run` is running on state_dir {state_dir} (its embedded "
            "Redis is not up); start it first, or set redis_url",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE
    # Redis is looked for once at the start (a Redis that goes away later shows on the page
    # and in /healthz); in single-machine mode serve only attaches to the one `run` owns.
    probe = endpoint_client(endpoint_url(config))
    try:
        probe.ping()
    finally:
        probe.close()
    return serve(config, args.listen, workers_seen)


COMMAND = Command(
    name="serve",
    summary="the read-only operations endpoint (metrics, probes, status page)",
    description="Serve /metrics (Prometheus), /healthz, /readyz, /api/status and the status "
    "page until SIGTERM or SIGINT. In single-machine mode it reads the embedded Redis of a "
    "running `threatshare run`; it never starts one.",
    examples=("threatshare serve --listen 127.0.0.1:9410",),
    exit_codes=(
        (EXIT_OK, "stopped cleanly"),
        (EXIT_FAILED, "the address cannot be bound"),
        CONFIG_CODE,
        (
            REDIS_CODE[0],
            "Redis cannot be reached at the start (in single-machine mode: no "
            "`threatshare run` is running on state_dir)",
        ),
    ),
    handler=_serve,
    arguments=_arguments,
)
