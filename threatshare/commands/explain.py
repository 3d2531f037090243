"""``threatshare explain``: why is this URL or host blocked?
(docs/design.md#provenance-and-audit)"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from threatshare.commands.base import (
    CONFIG_CODE,
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    REDIS_CODE,
    Command,
)
from threatshare.commands.reach import reached
from threatshare.config import Config


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="URL|HOST", help="what a user tried to open")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _explain(args: argparse.Namespace, config: Config) -> int:
    from threatshare.http import RetryPolicy, interactive
    from threatshare.ops.explain import NotExplainable, explain, zia_pending_reader
    from threatshare.ops.explain_text import render_explanation
    from threatshare.runtime import Runtime

    now = datetime.now(UTC)
    with reached(config) as client:
        rt = Runtime(config, client, policy=interactive(RetryPolicy()))
        try:
            result = explain(config, client, args.target, pending=zia_pending_reader(rt))
        except NotExplainable as exc:
            print(f"explain: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        finally:
            rt.close()
    print(json.dumps(result.to_json(), indent=2) if args.json else render_explanation(result, now))
    return EXIT_OK if result.blocked else EXIT_FAILED


COMMAND = Command(
    name="explain",
    summary="why is this URL or host blocked? (exit 0: blocked, 1: not blocked)",
    description="Find every entry of every instance's category that blocks URL or HOST as ZIA "
    "matches it (the host, a .domain wildcard above it, a shorter path), with its provenance "
    "(sources, first and last seen, sightings and the newest three), when it expires, whether "
    "ZIA enforces it now (one read per tenant, given up on within 30 s), and the unblock "
    "command that lifts it; and the rules that keep it from being pushed again.",
    examples=(
        "threatshare explain https://login.evil.example/reset?id=7",
        "threatshare explain evil.example --json",
    ),
    exit_codes=(
        (EXIT_OK, "an entry of a category blocks it"),
        (EXIT_FAILED, "nothing threatshare pushed blocks it"),
        CONFIG_CODE,
        REDIS_CODE,
    ),
    handler=_explain,
    arguments=_arguments,
)
