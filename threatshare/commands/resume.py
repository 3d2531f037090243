"""``threatshare resume NAME``: clear ``halted`` so the next run tries again."""

from __future__ import annotations

import argparse
import sys

from threatshare.commands.base import (
    CONFIG_CODE,
    EXIT_CONFIG,
    EXIT_OK,
    REDIS_CODE,
    UNEXPECTED_CODE,
    Command,
)
from threatshare.commands.reach import reached
from threatshare.config import Config


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="the halted instance")


def _resume(args: argparse.Namespace, config: Config) -> int:
    from threatshare.state.store import Store

    if args.name not in config.instances:
        print(f"no instance {args.name!r} in the configuration", file=sys.stderr)
        return EXIT_CONFIG
    with reached(config) as client:
        resumed = Store(client).resume(args.name)
    if resumed:
        print(f"{args.name}: resumed; the next run tries again")
    else:
        print(f"{args.name}: was not halted; nothing to do")
    return EXIT_OK


COMMAND = Command(
    name="resume",
    summary="clear 'halted' so the next run tries again",
    description="Clear the halted state of instance NAME once its cause is fixed; the next "
    "scheduled run (or run --once) syncs it, sharing what Mimecast saw meanwhile. A change "
    "of the instance's configuration (a new secret counts) resumes it by itself.",
    examples=("threatshare resume impersonation",),
    exit_codes=((EXIT_OK, "resumed, or was not halted"), UNEXPECTED_CODE, CONFIG_CODE, REDIS_CODE),
    handler=_resume,
    arguments=_arguments,
)
