"""``threatshare demo``: the whole product on the sandbox emulators, on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path

from threatshare.commands.base import EXIT_FAILED, EXIT_OK, REDIS_CODE, Command


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", metavar="DIR", help="where the demo keeps its files")


def _demo(args: argparse.Namespace, config: None) -> int:
    from threatshare.sandbox.demo import run_demo

    return run_demo(Path(args.state_dir) if args.state_dir else None)


COMMAND = Command(
    name="demo",
    summary="the whole product on sandbox emulators, on this machine",
    description="Start built-in emulators of Mimecast, an OAuth2 IdP and two ZIA tenants on "
    "loopback, an embedded Redis and an SMTP sink; write a sandbox configuration; sync every "
    "instance; then show status, what landed in each category and the alert e-mail of an "
    "instance whose ZIA client was revoked. Nothing leaves the machine. Reads no "
    "configuration.",
    examples=("threatshare demo", "threatshare demo --state-dir /tmp/ts-demo"),
    exit_codes=(
        (EXIT_OK, "the demo ran"),
        (EXIT_FAILED, "the demo could not run (an emulator or a file could not be set up)"),
        (2, "an argument is wrong"),
        REDIS_CODE,
    ),
    handler=_demo,
    arguments=_arguments,
    needs_config=False,
)
